"""chat.db.write: the wallet's writes run on the event loop on SQLite when the write lock is
free at once, go to a database thread (which waits for the lock) when it is not, and are
all or nothing either way. On PostgreSQL every write goes to a thread."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections
from pysqlite3 import dbapi2 as sqlite3  # the engine's SQLite (two SQLite libraries in one process break file locks)

from chat import db
from chat.billing.wallet import InsufficientBalance, wallet_reserve, wallet_settle, wallet_top_up
from chat.models import Account, LedgerEntry, UsageRecord
from chat.services import account_create

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _funded(balance: str) -> int:
    account = account_create(name="loop-writes")
    wallet_top_up(account_id=account.pk, amount=Decimal(balance), idempotency_key="seed")
    return int(account.pk)


def _books(account_id: int) -> tuple[Decimal, Decimal, list[str]]:
    balance = Account.objects.get(pk=account_id).balance
    entries = list(LedgerEntry.objects.filter(account_id=account_id).order_by("id"))
    return balance, sum((e.amount for e in entries), Decimal(0)), [e.kind for e in entries]


class Where:
    """Wraps a wallet function to record where each call ran: (thread, with a loop connection)."""

    def __init__(self, function: Any) -> None:
        self.function = function
        self.calls: list[tuple[int, bool]] = []

    def __call__(self, *, connection: sqlite3.Connection | None = None, **kwargs: Any) -> Any:
        self.calls.append((threading.get_ident(), connection is not None))
        return self.function(connection=connection, **kwargs)


def _sqlite() -> bool:
    return bool(connection.vendor == "sqlite")


def test_reserve_and_settle_run_on_the_loop_when_the_lock_is_free() -> None:
    account_id = _funded("1.00")
    reserve, settle = Where(wallet_reserve), Where(wallet_settle)

    async def paid_request() -> int:
        reservation = await db.write(reserve, account_id=account_id, amount=Decimal("0.60"), request_id="r1")
        usage = UsageRecord(account_id=account_id, model="m", request_id="r1", prompt_tokens=3, completion_tokens=4)
        usage.prompt_cost, usage.completion_cost = Decimal("0.05"), Decimal("0.20")
        await db.write(settle, reservation=reservation, cost=Decimal("0.25"), usage=usage)
        with pytest.raises(InsufficientBalance):  # the covered check, on the same path
            await db.write(reserve, account_id=account_id, amount=Decimal("0.76"), request_id="r2")
        return threading.get_ident()

    loop_thread = asyncio.run(paid_request())
    on_loop = _sqlite()  # PostgreSQL: every call on a database thread, without a loop connection
    assert [(thread == loop_thread, raw) for thread, raw in reserve.calls + settle.calls] == [(on_loop, on_loop)] * 3
    assert _books(account_id) == (Decimal("0.75"), Decimal("0.75"), ["topup", "reserve", "settle"])
    row = UsageRecord.objects.get(account_id=account_id)
    assert (row.request_id, row.prompt_tokens, row.completion_tokens, row.created_at is not None) == ("r1", 3, 4, True)


class LockHolder:
    """Another writer holding what the reservation needs: SQLite's write lock, or (PostgreSQL)
    the account's row."""

    def __init__(self, account_id: int) -> None:
        self.settings = connections[DEFAULT_DB_ALIAS].settings_dict
        if _sqlite():
            self.sqlite = sqlite3.connect(self.settings["NAME"], isolation_level=None)
            self.sqlite.execute("BEGIN IMMEDIATE")
            return
        import psycopg

        self.postgres = psycopg.connect(
            dbname=self.settings["NAME"],
            user=self.settings["USER"],
            host=self.settings["HOST"],
            port=self.settings["PORT"] or 5432,
        )
        self.postgres.execute("SELECT 1 FROM chat_account WHERE id = %s FOR UPDATE", (account_id,))

    def release(self) -> None:
        if _sqlite():
            self.sqlite.execute("COMMIT")
            self.sqlite.close()
        else:
            self.postgres.commit()
            self.postgres.close()


def test_a_held_write_lock_sends_the_write_to_a_thread_and_the_loop_never_waits() -> None:
    account_id = _funded("1.00")
    reserve = Where(wallet_reserve)
    holder = LockHolder(account_id)  # another writer (a second process, a console page)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    async def reserve_while_locked() -> int:
        beat = asyncio.ensure_future(ticker())
        asyncio.get_running_loop().call_later(0.3, holder.release)
        started = time.perf_counter()
        await db.write(reserve, account_id=account_id, amount=Decimal("0.10"), request_id="r1")
        assert time.perf_counter() - started >= 0.25  # it waited for the lock — on a thread
        beat.cancel()
        return threading.get_ident()

    loop_thread = asyncio.run(reserve_while_locked())
    *tried, (landed, thread_raw) = reserve.calls
    # SQLite: tried on the loop, then again after each of the short pauses, then a thread.
    on_loop = [(True, True)] * (1 + len(db.RETRY_PAUSES)) if _sqlite() else []
    assert [(thread == loop_thread, raw) for thread, raw in tried] == on_loop
    assert (landed != loop_thread, thread_raw) == (True, False)  # (SQLite: busy at once) on a database thread
    # The loop kept running meanwhile (~30 ticks in 0.3 s; a loop blocked on the lock: one).
    assert len(ticks) >= 10 and max(b - a for a, b in itertools.pairwise(ticks)) < 0.2
    assert _books(account_id) == (Decimal("0.90"), Decimal("0.90"), ["topup", "reserve"])


def test_a_brief_foreign_lock_does_not_send_a_burst_of_writes_to_threads() -> None:
    # Another connection holds SQLite's lock for 10 ms (a key's last-use update, the traffic
    # sampler) while 64 reservations arrive. They wait their turn on the loop and retry there;
    # before, each went to a database thread, whose transactions kept the lock busy for the
    # next ones and slept in SQLite's busy handler (up to 100 ms a step): the p99 at 16
    # connections was 0.5-0.7 s (bench/tail.py).
    account_id = _funded("100.00")
    reserve = Where(wallet_reserve)

    async def burst() -> int:
        await db.write(wallet_reserve, account_id=account_id, amount=Decimal("0.01"), request_id="warm")
        holder = LockHolder(account_id)
        asyncio.get_running_loop().call_later(0.01, holder.release)
        await asyncio.gather(
            *(db.write(reserve, account_id=account_id, amount=Decimal("0.01"), request_id=f"r{n}") for n in range(64))
        )
        return threading.get_ident()

    loop_thread = asyncio.run(burst())
    threads = {thread == loop_thread for thread, _ in reserve.calls}
    assert threads == ({True} if _sqlite() else {False})
    assert _books(account_id)[0] == Decimal("99.35")


def test_a_failing_statement_writes_nothing() -> None:
    """The usage row cannot be written (no model): the balance change and the ledger entry
    made before it in the same transaction are rolled back — on the loop and on a thread."""
    account_id = _funded("1.00")

    async def settle_a_broken_row() -> None:
        reservation = await db.write(wallet_reserve, account_id=account_id, amount=Decimal("0.50"), request_id="r1")
        broken = UsageRecord(account_id=account_id, model=None, request_id="r1")  # type: ignore[misc]
        broken.prompt_cost = broken.completion_cost = Decimal(0)
        with pytest.raises(Exception, match=r"NOT NULL|null value"):
            await db.write(wallet_settle, reservation=reservation, cost=Decimal("0.10"), usage=broken)
        with pytest.raises(Exception, match=r"NOT NULL|null value"):
            await db.run(wallet_settle, reservation=reservation, cost=Decimal("0.10"), usage=broken)

    asyncio.run(settle_a_broken_row())
    assert _books(account_id) == (Decimal("0.50"), Decimal("0.50"), ["topup", "reserve"])
    assert not UsageRecord.objects.filter(account_id=account_id).exists()


def test_postgresql_never_opens_a_connection_for_the_loop() -> None:
    if _sqlite():
        assert db._sqlite_database() == connections[DEFAULT_DB_ALIAS].settings_dict["NAME"]
        return  # SQLite: the tests around this one
    account_id = _funded("1.00")
    opened, commits = dict(db._loop_connections), db._loop_commits
    for number in range(3):
        asyncio.run(db.write(wallet_reserve, account_id=account_id, amount=Decimal("0.1"), request_id=f"r{number}"))
    assert db._sqlite_database() is None and (db._loop_connections, db._loop_commits) == (opened, commits)
    assert _books(account_id)[0] == Decimal("0.7")


def test_a_broken_loop_connection_is_replaced_and_the_write_lands(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _sqlite():
        return  # PostgreSQL: the test above
    account_id = _funded("1.00")
    reserve = Where(wallet_reserve)

    async def reserve_twice() -> tuple[sqlite3.Connection | None, sqlite3.Connection | None]:
        name = str(connections[DEFAULT_DB_ALIAS].settings_dict["NAME"])
        first = await db._loop_connection(name)
        assert first is not None
        first.close()  # as if the file had gone away under it
        await db.write(reserve, account_id=account_id, amount=Decimal("0.10"), request_id="r1")
        await db.write(reserve, account_id=account_id, amount=Decimal("0.10"), request_id="r2")
        return first, await db._loop_connection(name)

    first, second = asyncio.run(reserve_twice())
    assert second is not None and second is not first
    assert [raw for _, raw in reserve.calls] == [True, False, True]  # closed: a thread; then a new loop connection
    assert _books(account_id)[0] == Decimal("0.80")


def test_the_loop_never_checkpoints_and_a_thread_does_every_so_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint syncs the database file: the loop's connection has its automatic one off,
    and every CHECKPOINT_EVERY commits on the loop one runs on a database thread."""
    if not _sqlite():
        return  # PostgreSQL: see test_postgresql_never_opens_a_connection_for_the_loop
    account_id = _funded("100")
    monkeypatch.setattr(db, "CHECKPOINT_EVERY", 4)
    ran: list[tuple[int, ...]] = []

    def checkpoint() -> None:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
            ran.append((threading.get_ident(), *cursor.fetchone()))

    monkeypatch.setattr(db, "_checkpoint", checkpoint)

    async def reserve_nine() -> tuple[int, int]:
        name = str(connections[DEFAULT_DB_ALIAS].settings_dict["NAME"])
        conn = await db._loop_connection(name)
        assert conn is not None
        autocheckpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        commits = db._loop_commits
        for number in range(9):
            await db.write(wallet_reserve, account_id=account_id, amount=Decimal("1"), request_id=f"r{number}")
            await asyncio.sleep(0.02)  # room for a checkpoint between two writes
        await asyncio.gather(*db._checkpoints)
        return autocheckpoint, db._loop_commits - commits

    autocheckpoint, commits = asyncio.run(reserve_nine())
    assert (autocheckpoint, commits) == (0, 9)
    assert len(ran) in (2, 3)  # every 4th commit on the loop (the count runs on across tests)
    # (A checkpoint that meets a write on the loop finds the log busy and leaves it to the next.)
    assert all(thread != threading.get_ident() and busy == 0 and log == done for thread, busy, log, done in ran)
    assert _books(account_id)[0] == Decimal("91")
