"""Budgets on the money path: the SQL that holds a request's worst case against every budget
on its path (its key's, its member's, its account's) in the wallet's own reservation, and
gives back what the real cost did not use at settlement (chat.billing.wallet runs them).

A budget's counters are for one period, named by `period_key`: the day, ISO week or month
in the account's time zone ("2026-12-06", "2026-W49", "2026-12"), or "all". Each statement
names the current period for every kind at once (`CASE period WHEN 'day' THEN … END`), so a
request in a new period finds the counters from zero without anyone resetting them:

- hold: `held += worst case` where `spent + held + worst case <= amount` (counters of an
  older period count as zero) — one row changed, or the request is refused;
- settle: `spent += real cost` and the hold given back (only if the period it was taken in
  is still the budget's: a new period started from zero already).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chat.models import Budget

PeriodKeys = tuple[str, str, str]  # the current day, week and month


def period_keys(now: datetime, time_zone: str) -> PeriodKeys:
    local = now.astimezone(_zone(time_zone))
    year, week, _ = local.isocalendar()
    return local.strftime("%Y-%m-%d"), f"{year}-W{week:02d}", local.strftime("%Y-%m")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def period_key_of(period: str, keys: PeriodKeys) -> str:
    return {"day": keys[0], "week": keys[1], "month": keys[2]}.get(period, "all")


def resets_at(period: str, now: datetime, time_zone: str) -> datetime | None:
    """When the period that `now` is in ends (None: a lifetime budget never resets)."""
    zone = _zone(time_zone)
    today = now.astimezone(zone).date()
    if period == "day":
        start = today + timedelta(days=1)
    elif period == "week":
        start = today + timedelta(days=7 - today.weekday())
    elif period == "month":
        start = date(today.year + today.month // 12, today.month % 12 + 1, 1)
    else:
        return None
    return datetime.combine(start, time.min, tzinfo=zone)


@functools.cache
def _names(vendor: str) -> dict[str, str]:
    from django.db import connections

    quote = connections["default"].ops.quote_name
    field = Budget._meta.get_field
    return {
        "table": quote(Budget._meta.db_table),
        "id": quote(Budget._meta.pk.column),  # type: ignore[union-attr]
        "period": quote(field("period").column),  # type: ignore[union-attr]
        "key": quote(field("period_key").column),  # type: ignore[union-attr]
        "spent": quote(field("spent").column),  # type: ignore[union-attr]
        "held": quote(field("held").column),  # type: ignore[union-attr]
        "amount": quote(field("amount").column),  # type: ignore[union-attr]
    }


def _num(vendor: str, sql: str) -> str:
    """SQLite keeps decimals as binary floats: rounded to the ledger's ten places at every
    step, so a hundred holds of 0.000369 add up to 0.0369, not 0.036900000000000006."""
    return sql if vendor == "postgresql" else f"CAST(ROUND(({sql}), 10) AS NUMERIC)"


@functools.cache
def _hold_sql(vendor: str, count: int) -> str:
    """One UPDATE for `count` budgets: each changes only where it has room; the caller
    requires all `count` rows changed (else the reservation rolls back)."""
    n = _names(vendor)
    key, spent, held, limit = n["key"], n["spent"], n["held"], n["amount"]
    cur = f"(CASE {n['period']} WHEN 'day' THEN %s WHEN 'week' THEN %s WHEN 'month' THEN %s ELSE 'all' END)"
    amount = _num(vendor, "%s")
    new_held = _num(vendor, f"CASE WHEN {key} = {cur} THEN {held} ELSE 0 END + {amount}")
    room = _num(vendor, f"(CASE WHEN {key} = {cur} THEN {spent} + {held} ELSE 0 END) + {amount}")
    ids = ", ".join(["%s"] * count)
    return (
        f"UPDATE {n['table']} SET "
        f"{spent} = CASE WHEN {key} = {cur} THEN {spent} ELSE 0 END, "
        f"{held} = {new_held}, "
        f"{key} = {cur} "
        f"WHERE {n['id']} IN ({ids}) AND {room} <= {limit}"
    )


def hold_statement(vendor: str, budgets: Sequence[int], amount: Decimal, keys: PeriodKeys) -> tuple[str, list[object]]:
    """The hold of `amount` on every budget in `budgets`: all of them must change."""
    ordered = sorted(budgets)  # (PostgreSQL locks the rows it updates in the order it meets them)
    return _hold_sql(vendor, len(ordered)), [*keys, *keys, amount, *keys, *ordered, *keys, amount]


@functools.cache
def _settle_sql(vendor: str, count: int) -> str:
    n = _names(vendor)
    key, spent, held = n["key"], n["spent"], n["held"]
    cur = f"(CASE {n['period']} WHEN 'day' THEN %s WHEN 'week' THEN %s WHEN 'month' THEN %s ELSE 'all' END)"
    greatest = "GREATEST" if vendor == "postgresql" else "MAX"
    back = _num(vendor, f"{held} - {_num(vendor, '%s')}")
    new_spent = _num(vendor, f"CASE WHEN {key} = {cur} THEN {spent} ELSE 0 END + {_num(vendor, '%s')}")
    ids = ", ".join(["%s"] * count)
    return (
        f"UPDATE {n['table']} SET "
        f"{held} = CASE WHEN {key} = {cur} THEN {greatest}({back}, 0) WHEN {key} = {cur} THEN {held} ELSE 0 END, "
        f"{spent} = {new_spent}, "
        f"{key} = {cur} "
        f"WHERE {n['id']} IN ({ids})"
    )


def settle_statements(
    vendor: str, budgets: Sequence[int], *, held: Decimal, cost: Decimal, held_in: PeriodKeys, now: PeriodKeys
) -> list[tuple[str, list[object]]]:
    """Give back each budget's hold (taken in period `held_in`) and count the real cost in
    the current period (`now`): one UPDATE for all of them (a budget removed meanwhile is
    simply not there)."""
    if not budgets:
        return []
    ordered = sorted(budgets)
    return [(_settle_sql(vendor, len(ordered)), [*held_in, held, *now, *now, cost, *now, *ordered])]


@dataclass(frozen=True)
class Exceeded:
    budget: Budget
    used: Decimal
    resets: datetime | None


def exceeded(budgets: Sequence[int], amount: Decimal, now: datetime, time_zone: str) -> Exceeded | None:
    """After a refused hold: the first budget on the path without room for `amount` (None:
    they all had room; the wallet was short)."""
    keys = period_keys(now, time_zone)
    for budget in Budget.objects.filter(pk__in=budgets).order_by("pk"):
        current = budget.period_key == period_key_of(budget.period, keys)
        used = (budget.spent + budget.held) if current else Decimal(0)
        if used + amount > budget.amount:
            return Exceeded(budget, used, resets_at(budget.period, now, time_zone))
    return None
