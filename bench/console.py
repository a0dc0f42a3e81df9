"""The console at scale: a year of usage for an account with 1,000,000 usage rows.

Server time of each console read, measured in-process through Django's full request path
(middleware, session, the view, JSON), beside a baseline measured in the same run on the
same rows: the same figures aggregated from the usage rows themselves (what the console
would cost without the hourly rollups of chat.models.UsageHour). Target: a year of usage
renders in under 300 ms of server time.

Rows: one heavy account with --rows usage rows spread over the last 365 days, 3 models and
3 keys, and --others accounts with 1,000 rows each; rollups built from them as the
migration's backfill builds them (one row per account, key, model and UTC hour), checked
equal to the rows. A fresh PostgreSQL database is made and dropped.

    .venv/bin/python bench/console.py [--rows 1000000] [--runs 7] [--output bench/results/console.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "ghostgpt_bench_console"
MODELS = ("fast", "smart", "vision")
TARGET_MS = 300.0


def _setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")
    os.environ.setdefault("GHOSTGPT_DATA_DIR", tempfile.mkdtemp(prefix="ghostgpt-bench-"))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _populate(rows: int, others: int) -> tuple[int, str]:
    """The usage rows and their rollups; returns the heavy account's id and one key's secret."""
    from django.db import connection

    from chat.models import Account, ApiKey, Tier
    from chat.services import account_create_with_key

    key, secret = account_create_with_key(name="heavy")
    heavy = key.account
    keys = [key.pk] + [
        ApiKey.objects.create(account=heavy, name=f"k{n}", prefix=f"sk-b{n}", key_hash=f"{n}" * 64).pk for n in (1, 2)
    ]
    tier = Tier.objects.first()
    light = Account.objects.bulk_create([Account(name=f"other-{i}", tier=tier) for i in range(others)])
    models = "ARRAY[" + ",".join(f"'{m}'" for m in MODELS) + "]"
    key_array = "ARRAY[" + ",".join(str(k) for k in keys) + "]::bigint[]"
    insert = (
        "INSERT INTO chat_usagerecord (account_id, key_id, model, requested_model, request_id, prompt_tokens, "
        "completion_tokens, prompt_cost, completion_cost, estimated, dialect, failed, ttft_ms, duration_ms, "
        "prompt_text, answer_text, request_body, cached_tokens, cache_write_tokens, reasoning_tokens, cache_hit, "
        "cache_saved, "
        f"created_at) SELECT %s, ({key_array})[1 + n %% 3], ({models})[1 + (n / 7) %% 3], '', 'req-' || n, "
        "100 + n %% 900, 10 + n %% 300, (100 + n %% 900) * 0.0000025, (10 + n %% 300) * 0.00001, false, 'chat', "
        "false, 100 + n %% 400, 500 + n %% 4000, '', '', '', 0, 0, 0, false, 0, "
        "now() - (n * (365 * 86400.0 / %s)) * interval '1 second' "
        "FROM generate_series(1, %s) AS n"
    )
    with connection.cursor() as cursor:
        cursor.execute(insert, [heavy.pk, rows, rows])
        for account in light:
            cursor.execute(insert.replace(key_array, "ARRAY[NULL]::bigint[]"), [account.pk, 1000, 1000])
        cursor.execute(
            "INSERT INTO chat_usagehour (account_id, key_id, model, hour, requests, prompt_tokens, "
            "completion_tokens, cost, cache_hits, cache_saved) SELECT account_id, COALESCE(key_id, 0), model, "
            "date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', count(*), sum(prompt_tokens), "
            "sum(completion_tokens), sum(prompt_cost + completion_cost), 0, 0 FROM chat_usagerecord "
            "GROUP BY 1, 2, 3, 4"
        )
        cursor.execute("ANALYZE chat_usagerecord")
        cursor.execute("ANALYZE chat_usagehour")
    return heavy.pk, secret


def _timed(function: Callable[[], Any], runs: int) -> float:
    function()  # warm: the first run pays for imports and cold caches
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _get(client: Any, path: str, params: dict[str, Any]) -> Callable[[], Any]:
    def run() -> Any:
        response = client.get(path, params)
        assert response.status_code == 200, response.content[:300]
        return response

    return run


def _raw(account_id: int, since: Any, until: Any, bucket: str) -> Callable[[], Any]:
    """The baseline: the same buckets aggregated from the usage rows."""
    from zoneinfo import ZoneInfo

    from django.db.models import Count, F, Sum
    from django.db.models.functions import TruncDay, TruncHour

    from chat.models import UsageRecord

    trunc = TruncDay if bucket == "day" else TruncHour

    def run() -> list[dict[str, Any]]:
        return list(
            UsageRecord.objects.filter(account_id=account_id, created_at__gte=since, created_at__lt=until)
            .annotate(bucket=trunc("created_at", tzinfo=ZoneInfo("UTC")))
            .values("bucket", "model")
            .annotate(
                requests=Count("id"),
                prompt=Sum("prompt_tokens"),
                completion=Sum("completion_tokens"),
                cost=Sum(F("prompt_cost") + F("completion_cost")),
            )
            .order_by("bucket", "model")
        )

    return run


def _report(account_id: int, start: Any, end: Any, bucket: str) -> Callable[[], Any]:
    from zoneinfo import ZoneInfo

    from chat.console.selectors import UsageQuery, usage_report

    query = UsageQuery(account_id=account_id, start=start, end=end, tz=ZoneInfo("UTC"), bucket=bucket)
    return lambda: usage_report(query)


def _check_books(account_id: int) -> str:
    from django.db.models import F, Sum

    from chat.models import UsageHour, UsageRecord

    raw = UsageRecord.objects.filter(account_id=account_id).aggregate(
        n=Sum(1), cost=Sum(F("prompt_cost") + F("completion_cost"))
    )
    rolled = UsageHour.objects.filter(account_id=account_id).aggregate(n=Sum("requests"), cost=Sum("cost"))
    assert raw["cost"] == rolled["cost"] and raw["n"] == rolled["n"], (raw, rolled)
    return f"rollups = rows: {rolled['n']:,} requests, {rolled['cost']:.4f} cost"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--others", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    import psycopg

    admin = psycopg.connect(ADMIN_URL, autocommit=True)
    admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
    admin.execute(f"CREATE DATABASE {BENCH_DB}")
    try:
        _setup_django(ADMIN_URL.rsplit("/", 1)[0] + f"/{BENCH_DB}")
        from django.test import Client
        from django.utils import timezone

        from chat.models import UsageHour, UsageRecord

        started = time.perf_counter()
        account_id, secret = _populate(args.rows, args.others)
        loaded = time.perf_counter() - started
        books = _check_books(account_id)
        rows = UsageRecord.objects.filter(account_id=account_id).count()
        hours = UsageHour.objects.filter(account_id=account_id).count()

        client = Client()
        client.get("/console")
        token = client.cookies["csrftoken"].value
        signed = client.post(
            "/console/api/session", {"key": secret}, content_type="application/json", headers={"X-CSRFToken": token}
        )
        assert signed.status_code == 201, signed.content
        today = timezone.now().date()
        year = {"from": str(today - timedelta(days=364)), "to": str(today), "tz": "UTC"}
        month = {"from": str(today - timedelta(days=30)), "to": str(today), "tz": "UTC", "bucket": "hour"}
        now = timezone.now()
        cases = [
            (
                "usage: a year, day buckets",
                _get(client, "/console/api/usage", year),
                _report(account_id, today - timedelta(days=364), today, "day"),
                _raw(account_id, now - timedelta(days=365), now, "day"),
            ),
            (
                "usage: 31 days, hour buckets",
                _get(client, "/console/api/usage", month),
                _report(account_id, today - timedelta(days=30), today, "hour"),
                _raw(account_id, now - timedelta(days=31), now, "hour"),
            ),
            ("usage CSV: a year", _get(client, "/console/api/usage.csv", year), None, None),
            (
                "overview (balance, spend, 30-day trend)",
                _get(client, "/console/api/overview", {"tz": "UTC"}),
                None,
                None,
            ),
            ("requests: latest 50", _get(client, "/console/api/requests", {"limit": 50}), None, None),
        ]
        lines = [
            f"Console reads, PostgreSQL: one account with {rows:,} usage rows over 365 days ({hours:,} hourly "
            f"rollup rows), {args.others} other accounts × 1,000 rows; loaded in {loaded:.0f} s; {books}. "
            f"Medians of {args.runs} runs, ms.",
            "",
            "| read | whole request (ms) | under 300 ms | the query: from the rollups (ms) | "
            "baseline: the same buckets from the usage rows (ms) | baseline / rollups |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for name, served, report, baseline in cases:
            served_ms = _timed(served, args.runs)
            query, base, ratio = "—", "—", "—"
            if report is not None and baseline is not None:
                report_ms = _timed(report, args.runs)
                base_ms = _timed(baseline, max(1, args.runs // 2))
                query, base, ratio = f"{report_ms:.1f}", f"{base_ms:.1f}", f"{base_ms / report_ms:.1f}×"
            verdict = "yes" if served_ms < TARGET_MS else "NO"
            lines.append(f"| {name} | {served_ms:.1f} | {verdict} | {query} | {base} | {ratio} |")
        lines += [
            "",
            "Whole request: through Django's request path in-process (middleware, session, view, JSON). The",
            "query: `usage_report` (buckets per model, totals, the filters' models and keys) from the hourly",
            "rollups. Baseline: the same buckets aggregated from the usage rows themselves (no rollups), on the",
            "account and created_at indexes — what the console would run without them.",
        ]
        text = "\n".join(lines)
        print(text)
        if args.output:
            args.output.write_text(text + "\n")
    finally:
        from django.db import connections

        connections.close_all()
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
