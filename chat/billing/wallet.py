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
request). On SQLite, which takes one writer at a time anyway, the same change runs as ORM
calls in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, connection, models, transaction
from django.db.models import F

from chat.models import Account, LedgerEntry, UsageHour, UsageRecord

ZERO = Decimal(0)


class InsufficientBalance(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Reservation:
    account_id: int
    amount: Decimal
    request_id: str


def _record(
    account_id: int, kind: str, amount: Decimal, *, request_id: str = "", idempotency_key: str | None = None
) -> LedgerEntry:
    balance = Account.objects.filter(pk=account_id).values_list("balance", flat=True).get()
    return LedgerEntry.objects.create(
        account_id=account_id,
        kind=kind,
        amount=amount,
        balance_after=balance,
        request_id=request_id,
        idempotency_key=idempotency_key,
    )


def _insert_from_update(
    instance: models.Model, computed: dict[str, str], source: str = "moved"
) -> tuple[str, list[object]]:
    """`INSERT INTO <table> (...) SELECT ... [FROM source]` for an unsaved model instance:
    every concrete column but the primary key, prepared as Django saves it (auto_now_add
    included), except `computed` — field name to an SQL expression over `source`."""
    meta = instance._meta
    columns, values, params = [], [], []
    for field in meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.name in computed:
            values.append(computed[field.name])
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.pre_save(instance, add=True), connection))
    table = connection.ops.quote_name(meta.db_table)
    source = f" FROM {source}" if source else ""
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)}{source}", params


def _rollup(usage: UsageRecord, source: str = "") -> tuple[str, list[object]]:
    """The upsert that adds a saved-or-being-saved usage row to its hour's rollup
    (UsageHour): `INSERT … SELECT … [FROM source] ON CONFLICT … DO UPDATE SET n = n + EXCLUDED.n`,
    the same SQL on PostgreSQL and SQLite; the hour is the usage row's, in UTC."""
    quote = connection.ops.quote_name
    table = quote(UsageHour._meta.db_table)
    created = usage.created_at
    hour = created.replace(minute=0, second=0, microsecond=0)
    hour_field = UsageHour._meta.get_field("hour")
    cost_field = UsageHour._meta.get_field("cost")
    values: list[object] = [
        usage.account_id,
        usage.key_id or 0,
        usage.model,
        hour_field.get_db_prep_save(hour, connection),
        usage.prompt_tokens,
        usage.completion_tokens,
        cost_field.get_db_prep_save(usage.prompt_cost + usage.completion_cost, connection),
    ]
    keys = ["account_id", "key_id", "model", "hour"]
    sums = ["requests", "prompt_tokens", "completion_tokens", "cost"]
    columns = ", ".join(quote(c) for c in keys + sums)
    select = "SELECT %s, %s, %s, %s, 1, %s, %s, %s" + (f" FROM {source}" if source else "")
    added = ", ".join(f"{quote(c)} = {table}.{quote(c)} + EXCLUDED.{quote(c)}" for c in sums)
    sql = (
        f"INSERT INTO {table} ({columns}) {select} "
        f"ON CONFLICT ({', '.join(quote(c) for c in keys)}) DO UPDATE SET {added}"
    )
    return sql, values


def _usage_statements(usage: UsageRecord) -> list[tuple[str, list[object]]]:
    """The usage row's INSERT and its rollup's upsert (SQLite runs them one by one)."""
    insert = _insert_from_update(usage, {}, source="")
    return [insert, _rollup(usage)]  # created_at is set by preparing the INSERT


def _move(
    account_id: int,
    delta: Decimal,
    kind: str,
    request_id: str,
    *,
    covered: Decimal | None = None,
    usage: UsageRecord | None = None,
) -> bool:
    """Add `delta` to the balance and record it — only when the balance is at least `covered`,
    if given — with the usage row, if given, all or nothing. False when not covered."""
    quote = connection.ops.quote_name
    balance = quote(Account._meta.get_field("balance").column)
    account_table, account_pk = quote(Account._meta.db_table), quote(Account._meta.pk.column)  # type: ignore[union-attr]
    entry = LedgerEntry(account_id=account_id, kind=kind, amount=delta, request_id=request_id)
    if connection.vendor != "postgresql":
        # SQLite has no data-modifying CTEs: the same steps as statements in one transaction
        # (the write lock is taken at BEGIN), with the ORM's numeric casts. Raw statements,
        # not the ORM's update/save: compiling those was ~1 ms of a reserve + settle.
        update = (
            f"UPDATE {account_table} SET {balance} = CAST(({balance} + CAST(%s AS NUMERIC)) AS NUMERIC) "
            f"WHERE {account_pk} = %s"
        )
        params: list[object] = [delta, account_id]
        if covered is not None:
            update += f" AND {balance} >= CAST(%s AS NUMERIC)"
            params.append(covered)
        after = f"(SELECT {balance} FROM {account_table} WHERE {account_pk} = {int(account_id)})"
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(update, params)
            if cursor.rowcount != 1:
                return False
            for sql, values in [
                _insert_from_update(entry, {"balance_after": after}, source=""),
                *(_usage_statements(usage) if usage is not None else []),
            ]:
                cursor.execute(sql, values)
        return True
    update = f"UPDATE {account_table} SET {balance} = {balance} + %s WHERE {account_pk} = %s"
    params = [delta, account_id]
    if covered is not None:
        update += f" AND {balance} >= %s"
        params.append(covered)
    steps = [f"moved AS ({update} RETURNING {balance})"]
    for name, instance in (("entry", entry), ("usage_row", usage)):
        if instance is not None:
            sql, values = _insert_from_update(instance, {"balance_after": f"moved.{balance}"})
            steps.append(f"{name} AS ({sql})")
            params += values
    if usage is not None:  # created_at was set by preparing its INSERT above
        sql, values = _rollup(usage, source="moved")
        steps.append(f"rollup AS ({sql})")
        params += values
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(steps)} SELECT 1 FROM moved", params)
        return cursor.fetchone() is not None


def wallet_reserve(*, account_id: int, amount: Decimal, request_id: str) -> Reservation:
    """Take the worst-case cost now; raises InsufficientBalance when the balance is short
    (always when it is below zero). A reservation is never a credit: amounts <= 0 raise."""
    if amount <= 0:
        raise ValueError("a reservation must be positive")
    if not _move(account_id, -amount, LedgerEntry.Kind.RESERVE, request_id, covered=amount):
        raise InsufficientBalance
    return Reservation(account_id=account_id, amount=amount, request_id=request_id)


def wallet_settle(*, reservation: Reservation, cost: Decimal, usage: UsageRecord, failed: bool = False) -> None:
    """Charge the real cost and store the usage row: what the reservation took beyond it
    returns to the balance; a cost beyond the reservation is taken as an overage (see the
    module's policy). A request that failed before producing anything refunds all of it."""
    cost = max(cost, ZERO)
    if cost <= reservation.amount:
        kind = LedgerEntry.Kind.REFUND if failed and not cost else LedgerEntry.Kind.SETTLE
        delta = reservation.amount - cost
    else:
        kind, delta = LedgerEntry.Kind.OVERAGE, reservation.amount - cost
    _move(reservation.account_id, delta, kind, reservation.request_id, usage=usage)


def usage_record(*, usage: UsageRecord) -> None:
    """A usage row without money (a free model): the row and its rollup — one statement on
    PostgreSQL, one transaction on SQLite."""
    if connection.vendor != "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            for sql, values in _usage_statements(usage):
                cursor.execute(sql, values)
        return
    insert, params = _insert_from_update(usage, {}, source="")
    rollup, values = _rollup(usage)
    with connection.cursor() as cursor:
        cursor.execute(f"WITH usage_row AS ({insert}) {rollup}", params + values)


def wallet_top_up(*, account_id: int, amount: Decimal, idempotency_key: str | None) -> tuple[LedgerEntry, bool]:
    """Add money. The same idempotency key twice adds it once: returns (entry, created)."""
    if idempotency_key:
        existing = LedgerEntry.objects.filter(
            account_id=account_id, kind=LedgerEntry.Kind.TOPUP, idempotency_key=idempotency_key
        ).first()
        if existing:
            return existing, False
    try:
        with transaction.atomic():
            Account.objects.filter(pk=account_id).update(balance=F("balance") + amount)
            return _record(account_id, LedgerEntry.Kind.TOPUP, amount, idempotency_key=idempotency_key or None), True
    except IntegrityError:  # a concurrent top-up with the same key won the race
        return LedgerEntry.objects.get(
            account_id=account_id, kind=LedgerEntry.Kind.TOPUP, idempotency_key=idempotency_key
        ), False
