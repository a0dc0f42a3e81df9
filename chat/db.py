"""Database calls from the async hot path, on a few long-lived threads.

Django's stock handler runs an async request's `sync_to_async` calls on a thread made for
that request (asgiref's ThreadSensitiveContext), and database connections belong to
threads: every /v1 request opened a fresh connection (SQLite: a connect plus its PRAGMAs;
PostgreSQL: a pool checkout and reset). GhostGPT's handler (ghostgpt/handler.py) sends an
async view's thread-sensitive calls to asgiref's one shared thread instead, where they
would queue behind each other. Self-contained calls — one function doing its own query or
transaction — run here instead, on `DB_THREADS` persistent threads whose connections
live on. Before each call a connection that saw an error (or outlived CONN_MAX_AGE) is
checked and replaced, as Django does between requests.

The wallet's writes (a reservation, a settlement: two per paid request) take `write`
instead: on SQLite in WAL mode they run on the event loop itself when the write lock is
free at once, and go to a thread only when another writer holds it (see `write`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections
from pysqlite3 import dbapi2 as sqlite3  # the SQLite engine's module (ghostgpt/sqlite)

logger = logging.getLogger(__name__)
DB_THREADS = 4
T = TypeVar("T")
_executor = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="ghostgpt-db")


def _call(function: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    close_old_connections()
    return function(*args, **kwargs)


async def run(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`function(*args, **kwargs)` on a database thread, in a copy of the caller's context
    (it must not rely on anything thread-local from the request other than its own
    connection). A plain executor call: asgiref's `sync_to_async` (context restore, task
    bookkeeping) cost more than the thread hop itself."""
    call = functools.partial(contextvars.copy_context().run, _call, function, args, kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor, call)


# SQLite writes on the event loop (`write`).
CHECKPOINT_EVERY = 256  # loop commits between two checkpoints, on a database thread
# Pauses between the loop's tries when another writer holds the lock, before the write goes
# to a thread: the holder is nearly always another short transaction.
RETRY_PAUSES = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016)
_write_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
_loop_connections: dict[tuple[int, str], sqlite3.Connection | None] = {}
_loop_commits = 0
_checkpoints: set[asyncio.Task[None]] = set()


def _sqlite_database() -> str | None:
    """The SQLite database's name, or None when the database is not SQLite."""
    database = settings.DATABASES[DEFAULT_DB_ALIAS]
    return str(database["NAME"]) if connections[DEFAULT_DB_ALIAS].vendor == "sqlite" else None


def _open_for_loop() -> sqlite3.Connection | None:
    """(On a database thread.) A new connection made as Django makes its own — same file,
    PRAGMAs and functions — for the loop: autocommit, no busy wait, no automatic
    checkpoint. None unless the database is in WAL mode, where a commit only appends to
    the log (no fsync) and a writer never waits for readers."""
    db = connections[DEFAULT_DB_ALIAS]
    conn: sqlite3.Connection = db.get_new_connection(db.get_connection_params())
    conn.isolation_level = None
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.close()
        return None
    conn.execute("PRAGMA busy_timeout = 0")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


def _checkpoint() -> None:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")


async def _loop_connection(name: str) -> sqlite3.Connection | None:
    key = (threading.get_ident(), name)
    if key not in _loop_connections:
        try:
            conn = await run(_open_for_loop)
        except Exception:
            logger.warning("SQLite writes stay on database threads: no connection for the loop", exc_info=True)
            conn = None
        if key in _loop_connections and conn is not None:  # another request opened one meanwhile
            conn.close()
        _loop_connections.setdefault(key, conn)
    return _loop_connections[key]


def _committed_on_loop() -> None:
    """Count a commit on the loop; every CHECKPOINT_EVERY, copy the log back into the
    database on a thread (the loop's connection never checkpoints: that syncs the file)."""
    global _loop_commits
    _loop_commits += 1
    if _loop_commits % CHECKPOINT_EVERY == 0:
        task = asyncio.ensure_future(run(_checkpoint))
        _checkpoints.add(task)
        task.add_done_callback(_checkpoint_done)


def _checkpoint_done(task: asyncio.Task[None]) -> None:
    _checkpoints.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.warning("WAL checkpoint failed", exc_info=task.exception())


async def write(function: Callable[..., T], /, **kwargs: Any) -> T:
    """One short write transaction: `function(**kwargs, connection=...)` runs on the event
    loop itself with a raw SQLite connection when the database is SQLite in WAL mode and
    its write lock is free at once — a local transaction of ~0.05–0.1 ms, cheaper than the
    two thread switches of `run` — and otherwise `function(**kwargs)` runs on a database
    thread, as `run` does (PostgreSQL; another writer holding the lock, which the thread
    waits for as Django's connection does).

    `function` must open its own transaction on the connection (BEGIN IMMEDIATE: the lock
    at once or SQLITE_BUSY), roll it back on any error and write nothing but through it:
    an OperationalError, ProgrammingError or InterfaceError (busy, or a broken connection,
    which is then replaced) means nothing was written, and the same call goes to a thread.
    Other errors (a constraint) are the call's own and are raised.

    This process's writes take their turn on an asyncio lock first, so they never contend
    for SQLite's lock with each other: contended, SQLite's own busy handler sleeps in steps
    of up to 100 ms whether or not the lock was freed meanwhile, and one write sent to a
    thread kept the lock busy for the next ones — under 16 concurrent requests most writes
    went to threads and the p99 reached 0.5–0.7 s (bench/tail.py). When another process
    holds the lock, the loop tries again after short pauses (RETRY_PAUSES, 31 ms in all),
    then hands the write to a thread, which waits as Django's connection does."""
    name = _sqlite_database()
    if name is None:
        return await run(function, **kwargs)
    async with _write_lock():
        conn = await _loop_connection(name)
        for pause in (0.0, *RETRY_PAUSES):
            if conn is None:
                break
            if pause:
                await asyncio.sleep(pause)
            try:
                result = function(**kwargs, connection=conn)
            except (sqlite3.OperationalError, sqlite3.ProgrammingError, sqlite3.InterfaceError) as exc:
                busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if busy:
                    continue
                # not the lock: the connection itself (closed, its file gone) — a new one next time
                logger.warning("SQLite write on the loop failed; reconnecting (%s)", exc)
                _loop_connections.pop((threading.get_ident(), name), None)
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
                break
            else:
                _committed_on_loop()
                return result
        return await run(function, **kwargs)


def _write_lock() -> asyncio.Lock:
    """This event loop's lock for SQLite writes (one per loop: tests run several, and a lock
    is bound to the loop it was first used on)."""
    loop = asyncio.get_running_loop()
    lock = _write_locks.get(loop)
    if lock is None:
        lock = _write_locks[loop] = asyncio.Lock()
    return lock
