"""Conversation search at a million messages: `GET /api/conversations?q=` runs
`conversation_list(account_id, query)`. Each figure next to a baseline measured in the same
run, on the same rows:

- PostgreSQL: the query as served (the trigram index of migration 0009 and the account
  join available to the planner) vs the same query with index scans switched off for the
  session (what it cost before the index: a scan of every account's messages);
- SQLite: the account-scoped query as served vs the same match over the whole table (what
  an unscoped scan costs at this size).

Rows: ACCOUNTS accounts × 10 conversations × MESSAGES_PER_CONVERSATION messages (1,000,000
by default), one "heavy" account among them with 100× the messages of the others; terms: one
that occurs in a handful of the heavy account's messages, one common everywhere, one absent.
Medians of --runs, in milliseconds. A fresh database is made and dropped (PostgreSQL) or a
temporary file used (SQLite).

    .venv/bin/python bench/search.py [--database postgres|sqlite] [--messages 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DB = "ghostgpt_bench_search"
WORDS = ["apples", "harbour", "compiler", "violin", "glacier", "ledger", "orbit", "saffron", "quartz", "meadow"]
TERMS = {"rare": "zeppelinfog", "common": "harbour", "absent": "xylocarpous"}


def _setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")
    os.environ.setdefault("GHOSTGPT_DATA_DIR", tempfile.mkdtemp(prefix="ghostgpt-bench-"))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _populate(total: int, accounts: int) -> tuple[int, int]:
    """The rows; returns (heavy account id, light account id)."""
    from django.db import connection, transaction

    from chat.models import Account, Conversation, Tier

    tier = Tier.objects.first() or Tier.objects.create(name="bench")
    rows = Account.objects.bulk_create([Account(name=f"bench-{i}", tier=tier) for i in range(accounts)])
    heavy, light = rows[0], rows[1]
    weights = {heavy.pk: 100}
    units = sum(weights.get(account.pk, 1) for account in rows)
    per_conversation = max(1, total // (units * 10))
    conversations = []
    for account in rows:
        conversations += [Conversation(account=account, title=f"Chat {n}") for n in range(10)]
    Conversation.objects.bulk_create(conversations, batch_size=5000)
    vendor = connection.vendor
    with transaction.atomic(), connection.cursor() as cursor:
        for account in rows:
            count = per_conversation * weights.get(account.pk, 1)
            ids = [
                str(c.pk) if vendor == "postgresql" else c.pk.hex for c in conversations if c.account_id == account.pk
            ]
            _insert_messages(cursor, vendor, ids, count)
        rare = [str(uuid.uuid4()) for _ in range(5)]
        for number, message_id in enumerate(rare):  # a handful of the heavy account's messages hold the rare term
            conversation = next(c for c in conversations if c.account_id == heavy.pk)
            cursor.execute(
                "INSERT INTO chat_message (id, conversation_id, role, content, attachments, status, model, "
                "created_at, updated_at) VALUES (%s, %s, 'user', %s, '[]', 'complete', '', %s, %s)",
                [
                    message_id if vendor == "postgresql" else uuid.UUID(message_id).hex,
                    str(conversation.pk) if vendor == "postgresql" else conversation.pk.hex,
                    f"note {number}: the {TERMS['rare']} drifted over the harbour",
                    "2026-01-01 00:00:00",
                    "2026-01-01 00:00:00",
                ],
            )
        if vendor == "postgresql":
            cursor.execute("ANALYZE chat_message")
            cursor.execute("ANALYZE chat_conversation")
        else:
            cursor.execute("ANALYZE")
    return heavy.pk, light.pk


def _insert_messages(cursor: Any, vendor: str, conversation_ids: list[str], per_conversation: int) -> None:
    words = "ARRAY[" + ",".join(f"'{w}'" for w in WORDS) + "]"
    for conversation_id in conversation_ids:
        if vendor == "postgresql":
            cursor.execute(
                "INSERT INTO chat_message (id, conversation_id, role, content, attachments, status, model, created_at, "
                "updated_at) SELECT gen_random_uuid(), %s, CASE WHEN n %% 2 = 0 THEN 'user' ELSE 'assistant' END, "
                f"'message ' || n || ' about ' || ({words})[1 + n %% 10] || ' and ' || ({words})[1 + (n * 7) %% 10] "
                "|| ': ' || md5(n::text || %s) || ' ' || md5(%s || n::text), '[]', 'complete', '', now(), now() "
                "FROM generate_series(1, %s) AS n",
                [conversation_id, conversation_id, conversation_id, per_conversation],
            )
        else:
            cursor.execute(
                "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %s) "
                "INSERT INTO chat_message (id, conversation_id, role, content, attachments, status, model, created_at, "
                "updated_at) SELECT lower(hex(randomblob(16))), %s, CASE WHEN n %% 2 = 0 THEN 'user' ELSE 'assistant' "
                "END, 'message ' || n || ' about ' || "
                + _sqlite_pick("n")
                + " || ' and ' || "
                + _sqlite_pick("(n * 7)")
                + " || ': ' || hex(randomblob(16)) || ' ' || hex(randomblob(16)), '[]', 'complete', '', "
                "datetime('now'), datetime('now') FROM seq",
                [per_conversation, conversation_id],
            )


def _sqlite_pick(expression: str) -> str:
    cases = " ".join(f"WHEN {i} THEN '{word}'" for i, word in enumerate(WORDS))
    return f"(CASE {expression} %% 10 {cases} END)"


def _timed(function: Any, runs: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def _bench(heavy: int, light: int, runs: int) -> list[tuple[str, str, float, float, int]]:
    from django.db import connection

    from chat.models import Message
    from chat.web.selectors import conversation_list

    def served(account: int, term: str) -> Any:
        return lambda: len(list(conversation_list(account_id=account, query=term)[:100]))

    def baseline(account: int, term: str) -> Any:
        if connection.vendor == "postgresql":

            def run() -> int:
                with connection.cursor() as cursor:
                    cursor.execute("SET enable_indexscan = off")
                    cursor.execute("SET enable_bitmapscan = off")
                try:
                    return len(list(conversation_list(account_id=account, query=term)[:100]))
                finally:
                    with connection.cursor() as cursor:
                        cursor.execute("RESET enable_indexscan")
                        cursor.execute("RESET enable_bitmapscan")

            return run
        return lambda: len(
            set(Message.objects.filter(content__icontains=term).values_list("conversation_id", flat=True))
        )

    rows = []
    for who, account in (("heavy", heavy), ("light", light)):
        for kind, term in TERMS.items():
            served_ms, found = _timed(served(account, term), runs)
            baseline_ms, _ = _timed(baseline(account, term), max(1, runs // 2))
            rows.append((who, kind, served_ms, baseline_ms, found))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    admin = None
    if args.database == "postgres":
        import psycopg

        admin = psycopg.connect(ADMIN_URL, autocommit=True)
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        admin.execute(f"CREATE DATABASE {BENCH_DB}")
        url = ADMIN_URL.rsplit("/", 1)[0] + f"/{BENCH_DB}"
    else:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='ghostgpt-bench-')}/search.sqlite3"
    try:
        _setup_django(url)
        started = time.perf_counter()
        heavy, light = _populate(args.messages, args.accounts)
        loaded = time.perf_counter() - started
        from chat.models import Message

        total = Message.objects.count()
        heavy_count = Message.objects.filter(conversation__account_id=heavy).count()
        lines = [
            f"Conversation search, {args.database}: {total:,} messages in {args.accounts:,} accounts "
            f"(heavy account: {heavy_count:,}; loaded in {loaded:.0f} s); medians of {args.runs} runs, ms",
            "",
            "| account | term | served (ms) | baseline (ms) | baseline / served | conversations found |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for who, kind, served_ms, baseline_ms, found in _bench(heavy, light, args.runs):
            lines.append(
                f"| {who} | {kind} | {served_ms:.1f} | {baseline_ms:.1f} | {baseline_ms / served_ms:.1f}× | {found} |"
            )
        baseline_name = (
            "the same query with index scans off (a scan of every message)"
            if args.database == "postgres"
            else "the same match over the whole table, not scoped to the account"
        )
        lines += ["", f"Baseline: {baseline_name}."]
        text = "\n".join(lines)
        print(text)
        if args.output:
            args.output.write_text(text + "\n")
    finally:
        if admin is not None:
            from django.db import connections

            connections.close_all()
            admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
