"""Database calls from the async hot path, on a few long-lived threads.

Django runs an async request's `sync_to_async` calls on a thread made for that request
(asgiref's ThreadSensitiveContext), and database connections belong to threads: every
/v1 request opened a fresh connection (SQLite: a connect plus its PRAGMAs; PostgreSQL: a
pool checkout and reset). Self-contained calls — one function doing its own query or
transaction — run here instead, on `DB_THREADS` persistent threads whose connections
live on. Before each call a connection that saw an error (or outlived CONN_MAX_AGE) is
checked and replaced, as Django does between requests.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

DB_THREADS = 4
T = TypeVar("T")
_executor = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="ghostgpt-db")


def _call(function: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    close_old_connections()
    return function(*args, **kwargs)


# One wrapper for every call (building it inspects the function: ~3% of a request's time).
_on_db_thread = sync_to_async(_call, thread_sensitive=False, executor=_executor)


async def run(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`function(*args, **kwargs)` on a database thread (it must not rely on anything
    thread-local from the request other than its own connection)."""
    return await _on_db_thread(function, args, kwargs)  # type: ignore[no-any-return]
