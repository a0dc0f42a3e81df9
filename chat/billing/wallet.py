"""Money moves here only: reserve, settle, top up. Each is one transaction whose
balance change is a conditional UPDATE, so concurrent requests can never overspend, and
whose ledger entry records the change (the entries of an account sum to its balance).

Overage policy: a request is admitted only when the balance covers its worst case, so the
real cost is almost always within the reservation. When it is not (a model reported more
than its bound allowed, or a price changed mid-request), settlement still charges every
reported token: an `overage` entry takes the excess, which may take the balance below zero
by at most that excess. An account below zero gets 402 on every priced request until a
top-up makes it positive again.

On PostgreSQL a reservation and a settlement are each one statement (a data-modifying WITH:
the UPDATE, then the ledger entry, the usage row and its hourly rollup (chat.models.UsageHour,
what the console charts read) written from what it returned), run in autocommit: the
account's row lock lives for that statement inside the server only. As a Django transaction
each was 4–5 round trips to this process with the lock held, each waiting for a busy
process's GIL; bench/scale.py measured 59 paying requests/s for one web
process that way and 90 this way (web CPU 16 → 10.5 ms, PostgreSQL 3.1 → 1.9 ms per
request). On SQLite, which takes one writer at a time anyway, the same steps run as raw
statements in one transaction — on the event loop itself when its write lock is free at
once (chat.db.write: the reserve and the settlement cost two thread switches each
otherwise)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Field
from django.utils import timezone
from pysqlite3 import dbapi2 as sqlite3  # the SQLite engine's module (ghostgpt/sqlite)

from chat.billing.budgets import PeriodKeys, hold_statement, period_keys, settle_statements
from chat.models import Account, LedgerEntry, UsageHour, UsageRecord

ZERO = Decimal(0)
_FORMAT_PLACEHOLDER = re.compile(r"(?<!%)%s")
_HOUR = UsageHour._meta.get_field("hour")
_COST = UsageHour._meta.get_field("cost")


class InsufficientBalance(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Reservation:
    account_id: int
    amount: Decimal
    request_id: str
    # The budgets on the request's path it holds `amount` against, and the periods it took
    # the holds in (chat.billing.budgets).
    budgets: tuple[int, ...] = ()
    held_in: PeriodKeys = ("", "", "")
    time_zone: str = "UTC"


def _record(
    account_id: int,
    kind: str,
    amount: Decimal,
    *,
    request_id: str = "",
    idempotency_key: str | None = None,
    detail: dict[str, Any] | None = None,
) -> LedgerEntry:
    balance = Account.objects.filter(pk=account_id).values_list("balance", flat=True).get()
    return LedgerEntry.objects.create(
        account_id=account_id,
        kind=kind,
        amount=amount,
        balance_after=balance,
        request_id=request_id,
        idempotency_key=idempotency_key,
        detail=detail or {},
    )


def _quoted(vendor: str) -> Callable[[str], str]:
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    assert connections[DEFAULT_DB_ALIAS].vendor == vendor
    return quote


@functools.cache
def _insert_sql(
    model: type[models.Model], vendor: str, computed: tuple[tuple[str, str], ...], source: str
) -> tuple[str, tuple[Field[Any, Any], ...]]:
    """`INSERT INTO <table> (...) SELECT ... [FROM source]` for `model`: every concrete column
    but the primary key as a parameter, then the `computed` ones (field name, SQL expression
    over `source`, whose own parameters follow the fields'). Built once per shape: the SQL
    text and the fields whose prepared values fill its parameters, in order."""
    quote = _quoted(vendor)
    named = dict(computed)
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key and f.name not in named)
    columns = [quote(f.column) for f in fields] + [quote(model._meta.get_field(name).column) for name in named]
    values = ["%s"] * len(fields) + list(named.values())
    table = quote(model._meta.db_table)
    source = f" FROM {source}" if source else ""
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)}{source}", fields


def _insert_from_update(
    db: BaseDatabaseWrapper,
    instance: models.Model,
    computed: tuple[tuple[str, str], ...] = (),
    source: str = "moved",
    computed_params: Sequence[object] = (),
) -> tuple[str, list[object]]:
    """The INSERT of an unsaved model instance (see `_insert_sql`), prepared as Django saves
    it (auto_now_add included)."""
    # (django-stubs types a model class as unhashable; it is hashable)
    sql, fields = _insert_sql(type(instance), db.vendor, computed, source)  # type: ignore[arg-type]
    params = [field.get_db_prep_save(field.pre_save(instance, add=True), db) for field in fields]
    return sql, params + list(computed_params)


@functools.cache
def _rollup_sql(vendor: str, source: str) -> str:
    quote = _quoted(vendor)
    table = quote(UsageHour._meta.db_table)
    keys = ["account_id", "key_id", "model", "hour"]
    sums = ["requests", "prompt_tokens", "completion_tokens", "cost", "cache_hits", "cache_saved"]
    columns = ", ".join(quote(c) for c in keys + sums)
    select = "SELECT %s, %s, %s, %s, 1, %s, %s, %s, %s, %s" + (f" FROM {source}" if source else "")
    added = ", ".join(f"{quote(c)} = {table}.{quote(c)} + EXCLUDED.{quote(c)}" for c in sums)
    return (
        f"INSERT INTO {table} ({columns}) {select} "
        f"ON CONFLICT ({', '.join(quote(c) for c in keys)}) DO UPDATE SET {added}"
    )


def _rollup(db: BaseDatabaseWrapper, usage: UsageRecord, source: str = "") -> tuple[str, list[object]]:
    """The upsert that adds a saved-or-being-saved usage row to its hour's rollup
    (UsageHour): `INSERT … SELECT … [FROM source] ON CONFLICT … DO UPDATE SET n = n + EXCLUDED.n`,
    the same SQL on PostgreSQL and SQLite; the hour is the usage row's, in UTC."""
    hour = usage.created_at.replace(minute=0, second=0, microsecond=0)
    values: list[object] = [
        usage.account_id,
        usage.key_id or 0,
        usage.model,
        _HOUR.get_db_prep_save(hour, db),
        usage.prompt_tokens,
        usage.completion_tokens,
        _COST.get_db_prep_save(usage.prompt_cost + usage.completion_cost, db),
        int(usage.cache_hit),
        _COST.get_db_prep_save(usage.cache_saved, db),
    ]
    return _rollup_sql(db.vendor, source), values


def _usage_statements(db: BaseDatabaseWrapper, usage: UsageRecord) -> list[tuple[str, list[object]]]:
    """The usage row's INSERT and its rollup's upsert (SQLite runs them one by one)."""
    insert = _insert_from_update(db, usage, source="")
    return [insert, _rollup(db, usage)]  # created_at is set by preparing the INSERT


@functools.cache
def _update_sql(vendor: str, covered: bool) -> str:
    """The balance move: `UPDATE … SET balance = balance + %s WHERE pk = %s [AND balance >= %s]`
    (SQLite: with the ORM's numeric casts)."""
    quote = _quoted(vendor)
    balance = quote(Account._meta.get_field("balance").column)
    table, pk = quote(Account._meta.db_table), quote(Account._meta.pk.column)  # type: ignore[union-attr]
    if vendor == "postgresql":
        update = f"UPDATE {table} SET {balance} = {balance} + %s WHERE {pk} = %s"
        return update + (f" AND {balance} >= %s" if covered else "")
    update = f"UPDATE {table} SET {balance} = CAST(({balance} + CAST(%s AS NUMERIC)) AS NUMERIC) WHERE {pk} = %s"
    return update + (f" AND {balance} >= CAST(%s AS NUMERIC)" if covered else "")


@functools.cache
def _balance_after(vendor: str) -> tuple[tuple[str, str], ...]:
    """A ledger entry's balance_after, computed in SQL: the moved row's balance (PostgreSQL,
    from the `moved` CTE) or the account's balance read back by a subquery (SQLite; its one
    parameter is the account's id, passed as `computed_params`)."""
    quote = _quoted(vendor)
    balance = quote(Account._meta.get_field("balance").column)
    if vendor == "postgresql":
        return (("balance_after", f"moved.{balance}"),)
    table, pk = quote(Account._meta.db_table), quote(Account._meta.pk.column)  # type: ignore[union-attr]
    return (("balance_after", f"(SELECT {balance} FROM {table} WHERE {pk} = %s)"),)


Statement = tuple[str, list[object]]


@functools.lru_cache(maxsize=64)
def _qmark(sql: str) -> str:
    """Django's `%s` placeholders as sqlite3's `?` (what Django's SQLite cursor does to every
    statement it runs)."""
    return _FORMAT_PLACEHOLDER.sub("?", sql).replace("%%", "%")


Checked = bool | tuple[int, ...]


def _execute_all(
    execute: Callable[[str, list[object]], int], statements: Sequence[Statement], checked: Checked
) -> bool:
    """Run `statements` through `execute` (which returns the rows changed), in order; False,
    at once, when a leading statement changed other than its expected rows (`checked`: True
    for the first one row, or the expected counts of the first statements)."""
    expected = (1,) if checked is True else () if checked is False else checked
    for number, (sql, params) in enumerate(statements):
        changed = execute(sql, params)
        if number < len(expected) and changed != expected[number]:
            return False
    return True


def _sqlite_transaction(conn: sqlite3.Connection, statements: Sequence[Statement], *, checked: Checked) -> bool:
    """`statements` in one transaction on a raw sqlite3 connection in autocommit mode, the
    write lock taken at BEGIN; rolled back when the check fails (False). Anything raised
    rolls it back (a COMMIT refused leaves the transaction open: rolled back too), so
    nothing is half written."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = _execute_all(lambda sql, params: conn.execute(_qmark(sql), params).rowcount, statements, checked)
        conn.execute("COMMIT" if done else "ROLLBACK")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return done


def _run_sqlite(statements: Sequence[Statement], connection: sqlite3.Connection | None, *, checked: Checked) -> bool:
    """SQLite has no data-modifying CTEs: the statements run one by one in one transaction
    (chat.db.write's connection, when given), as raw sqlite3 calls — Django's cursor, its
    placeholder rewrite and `atomic` were ~40% of a reserve. Inside a caller's transaction
    (`atomic`, tests) they go through Django's cursor, as a savepoint."""
    if connection is not None:
        return _sqlite_transaction(connection, statements, checked=checked)
    db = connections[DEFAULT_DB_ALIAS]
    if not db.in_atomic_block and db.get_autocommit():
        with db.wrap_database_errors:
            return _sqlite_transaction(db.connection, statements, checked=checked)
    with transaction.atomic(), db.cursor() as cursor:

        def execute(sql: str, params: list[object]) -> int:
            cursor.execute(sql, params)
            return int(cursor.rowcount)

        done = _execute_all(execute, statements, checked)
        transaction.set_rollback(not done)
    return done


def _move(
    account_id: int,
    delta: Decimal,
    kind: str,
    request_id: str,
    *,
    covered: Decimal | None = None,
    usage: UsageRecord | None = None,
    detail: dict[str, Any] | None = None,
    connection: sqlite3.Connection | None = None,
    budgets: Sequence[Statement] = (),
    holding: int = 0,
) -> bool:
    """Add `delta` to the balance and record it — only when the balance is at least `covered`,
    if given — with the usage row, if given, all or nothing. False when not covered.
    `budgets`: budget statements (chat.billing.budgets) — with `covered`, one hold that must
    change all `holding` budgets first, else nothing moves; without, the settlement's, after.
    `connection`: a raw SQLite connection to run on (see chat.db.write)."""
    db = connections[DEFAULT_DB_ALIAS]
    entry = LedgerEntry(account_id=account_id, kind=kind, amount=delta, request_id=request_id, detail=detail or {})
    update = _update_sql(db.vendor, covered is not None)
    params: list[object] = [delta, account_id] + ([covered] if covered is not None else [])
    after = _balance_after(db.vendor)
    if db.vendor != "postgresql":  # (chat.db.write gives a connection on SQLite only)
        statements = [
            (update, params),
            _insert_from_update(db, entry, after, source="", computed_params=[account_id]),
            *(_usage_statements(db, usage) if usage is not None else []),
        ]
        if covered is None:  # a settlement: the budgets' rows after (one of them may be gone)
            return _run_sqlite([*statements, *budgets], connection, checked=True)
        # A hold: every budget must have room, then the balance must cover.
        return _run_sqlite([*budgets, *statements], connection, checked=(holding, 1) if budgets else True)
    if budgets:
        return _move_postgres_with_budgets(db, budgets, update, params, entry, after, usage, holding)
    statement, params = _postgres_move(db, update, params, entry, after, usage)
    with db.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone() is not None


def _postgres_move(
    db: BaseDatabaseWrapper,
    update: str,
    params: list[object],
    entry: LedgerEntry,
    after: tuple[tuple[str, str], ...],
    usage: UsageRecord | None,
) -> Statement:
    """The balance move as one PostgreSQL statement: the UPDATE, then the ledger entry, the
    usage row and its rollup written from what it returned."""
    balance = db.ops.quote_name(Account._meta.get_field("balance").column)
    steps = [f"moved AS ({update} RETURNING {balance})"]
    sql, values = _insert_from_update(db, entry, after)
    steps.append(f"entry AS ({sql})")
    params = params + values
    if usage is not None:
        sql, values = _insert_from_update(db, usage)
        steps.append(f"usage_row AS ({sql})")
        params += values
        sql, values = _rollup(db, usage, source="moved")  # created_at was set by preparing its INSERT
        steps.append(f"rollup AS ({sql})")
        params += values
    return f"WITH {', '.join(steps)} SELECT 1 FROM moved", params


def _move_postgres_with_budgets(
    db: BaseDatabaseWrapper,
    budgets: Sequence[Statement],
    update: str,
    params: list[object],
    entry: LedgerEntry,
    after: tuple[tuple[str, str], ...],
    usage: UsageRecord | None,
    holding: int,
) -> bool:
    """With budgets on PostgreSQL, one transaction: their statement first (the budgets before
    the account, the same lock order everywhere), then the balance move. A hold that does not
    change all `holding` budgets (one had no room), or a balance that does not cover, rolls all
    of it back."""
    with transaction.atomic(using=DEFAULT_DB_ALIAS), db.cursor() as cursor:
        for sql, values in budgets:
            cursor.execute(sql, values)
            if holding and cursor.rowcount != holding:
                transaction.set_rollback(True)
                return False
        statement, values = _postgres_move(db, update, params, entry, after, usage)
        cursor.execute(statement, values)
        if cursor.fetchone() is None:
            transaction.set_rollback(True)
            return False
    return True


def wallet_reserve(
    *,
    account_id: int,
    amount: Decimal,
    request_id: str,
    detail: dict[str, Any] | None = None,
    connection: sqlite3.Connection | None = None,
    budgets: tuple[int, ...] = (),
    time_zone: str = "UTC",
) -> Reservation:
    """Take the worst-case cost now, and hold it against each of `budgets` in the same
    transaction; raises InsufficientBalance when a budget has no room for it or the balance
    is short (always when it is below zero; chat.billing.budgets.exceeded tells which). A
    reservation is never a credit: amounts <= 0 raise. `detail`: what it holds, kept on its
    ledger entry (chat.billing.reconcile reads it). `time_zone`: the account's, where its
    budgets' periods begin. `connection`: chat.db.write's, when it runs this on the event loop."""
    if amount <= 0:
        raise ValueError("a reservation must be positive")
    now = timezone.now()
    keys = period_keys(now, time_zone) if budgets else ("", "", "")
    if budgets:
        detail = {**(detail or {}), "budgets": list(budgets), "held_in": list(keys)}
    vendor = connections[DEFAULT_DB_ALIAS].vendor
    moved = _move(
        account_id,
        -amount,
        LedgerEntry.Kind.RESERVE,
        request_id,
        covered=amount,
        detail=detail,
        connection=connection,
        budgets=[hold_statement(vendor, budgets, amount, keys)] if budgets else (),
        holding=len(budgets),
    )
    if not moved:  # the caller asks chat.billing.budgets.exceeded which, off the event loop
        raise InsufficientBalance
    return Reservation(
        account_id=account_id, amount=amount, request_id=request_id, budgets=budgets, held_in=keys, time_zone=time_zone
    )


def wallet_settle(
    *,
    reservation: Reservation,
    cost: Decimal,
    usage: UsageRecord | None,
    failed: bool = False,
    connection: sqlite3.Connection | None = None,
) -> None:
    """Charge the real cost and store the usage row: what the reservation took beyond it
    returns to the balance; a cost beyond the reservation is taken as an overage (see the
    module's policy). A request that failed before producing anything refunds all of it.
    `connection`: as for `wallet_reserve`."""
    cost = max(cost, ZERO)
    if cost <= reservation.amount:
        kind = LedgerEntry.Kind.REFUND if failed and not cost else LedgerEntry.Kind.SETTLE
        delta = reservation.amount - cost
    else:
        kind, delta = LedgerEntry.Kind.OVERAGE, reservation.amount - cost
    budgets: list[Statement] = []
    if reservation.budgets:
        vendor = connections[DEFAULT_DB_ALIAS].vendor
        now = period_keys(timezone.now(), reservation.time_zone)
        budgets = settle_statements(
            vendor, reservation.budgets, held=reservation.amount, cost=cost, held_in=reservation.held_in, now=now
        )
    _move(
        reservation.account_id, delta, kind, reservation.request_id, usage=usage, connection=connection, budgets=budgets
    )


def usage_record(*, usage: UsageRecord, connection: sqlite3.Connection | None = None) -> None:
    """A usage row without money (a free model): the row and its rollup — one statement on
    PostgreSQL, one transaction on SQLite. `connection`: as for `wallet_reserve`."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        _run_sqlite(_usage_statements(db, usage), connection, checked=False)
        return
    insert, params = _insert_from_update(db, usage, source="")
    rollup, values = _rollup(db, usage)
    with db.cursor() as cursor:
        cursor.execute(f"WITH usage_row AS ({insert}) {rollup}", params + values)


def wallet_top_up(
    *, account_id: int, amount: Decimal, idempotency_key: str | None, detail: dict[str, Any] | None = None
) -> tuple[LedgerEntry, bool]:
    """Add money. The same idempotency key twice adds it once: returns (entry, created)."""
    return wallet_adjust(
        account_id=account_id,
        kind=LedgerEntry.Kind.TOPUP,
        amount=amount,
        idempotency_key=idempotency_key,
        detail=detail,
    )


def wallet_adjust(
    *, account_id: int, kind: str, amount: Decimal, idempotency_key: str | None, detail: dict[str, Any] | None = None
) -> tuple[LedgerEntry, bool]:
    """Add (or, negative, take) money outside a request: a top-up, a payment refunded or
    disputed. The balance may go below zero. The same idempotency key and kind twice count
    once: returns (entry, created)."""
    if idempotency_key:
        existing = LedgerEntry.objects.filter(account_id=account_id, kind=kind, idempotency_key=idempotency_key).first()
        if existing:
            return existing, False
    try:
        with transaction.atomic():
            Account.objects.filter(pk=account_id).update(balance=F("balance") + amount)
            entry = _record(account_id, kind, amount, idempotency_key=idempotency_key or None, detail=detail or {})
            # Whether the balance is below zero decides access (chat.api.auth): every process's
            # key cache forgets the account's keys.
            from chat import keycache

            keycache.bump()
            transaction.on_commit(keycache.bump)
            return entry, True
    except IntegrityError:  # a concurrent one with the same key won the race
        return LedgerEntry.objects.get(account_id=account_id, kind=kind, idempotency_key=idempotency_key), False
