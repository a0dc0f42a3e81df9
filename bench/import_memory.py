"""An import's memory against the file's size, in one run.

A ChatGPT `conversations.json` of about --megabytes MB (made here: conversations with a
branch each, public-domain filler text) is imported into a fresh SQLite database by the
import tool's own path, twice, each in a fresh process:
- whole (the baseline: how uploads were read before, the file as one bytes object in memory);
- pieces (now: tools.uploads — stored a piece at a time, read through a seekable file that
  holds one 1 MB piece).
Each child reports its resident memory after Django is set up and its peak (ru_maxrss) by
the end; the import's own memory is the difference. Target: the pieces' import stays flat
(well under the file's size) where the whole file's grows with it.

    .venv/bin/python bench/import_memory.py [--megabytes 100] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARAGRAPH = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light. "
)


def make_export(path: Path, megabytes: int) -> int:
    """A ChatGPT export of about `megabytes` MB, written a conversation at a time."""
    target, written, count = megabytes * 1024 * 1024, 0, 0
    with path.open("w", encoding="utf-8") as file:
        file.write("[")
        while written < target:
            text = PARAGRAPH * 20
            mapping = {
                "root": {"id": "root", "message": None, "parent": None, "children": ["q"]},
                "q": _node("q", "root", ["a1", "a2"], "user", f"Question {count}: {text}"),
                "a1": _node("a1", "q", [], "assistant", f"First answer. {text}"),
                "a2": _node("a2", "q", [], "assistant", f"Second answer. {text}"),
            }
            item = json.dumps(
                {"title": f"Chat {count}", "create_time": 1.7e9, "mapping": mapping, "current_node": "a2"}
            )
            file.write(("," if count else "") + item)
            written += len(item)
            count += 1
        file.write("]")
    return count


def _node(key: str, parent: str, children: list[str], role: str, text: str) -> dict[str, object]:
    message = {"id": key, "author": {"role": role}, "content": {"content_type": "text", "parts": [text]}}
    return {"id": key, "message": message, "parent": parent, "children": children}


CHILD = """
import io, json, os, resource, sys, time
import django
django.setup()
from pathlib import Path
from chat.services import account_create_with_key
from chat.web.importer import import_chats
from tools.models import Job
from tools.uploads import open_upload, store_upload

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

how, path = sys.argv[1], Path(sys.argv[2])
key, _ = account_create_with_key(name="bench-" + how)
before = rss_mb()
started = time.perf_counter()
if how == "whole":
    with io.BytesIO(path.read_bytes()) as file:
        result = import_chats(file, account_id=key.account_id, owner_id=None)
else:
    job = Job.objects.create(tool="import-chats", params={"upload": True})
    store_upload(job=job, path=path)
    with open_upload(job) as file:
        result = import_chats(file, account_id=key.account_id, owner_id=None)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"before": before, "peak": peak, "seconds": seconds, "conversations": result["conversations"]}))
"""


def run_child(how: str, export: Path, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, how, str(export)], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ghostgpt-bench-import-") as tmp:
        export = Path(tmp) / "conversations.json"
        started = time.perf_counter()
        conversations = make_export(export, args.megabytes)
        size_mb = export.stat().st_size / 2**20
        made = time.perf_counter() - started
        print(f"made {export.name}: {size_mb:.1f} MB, {conversations} conversations ({made:.1f}s)")
        rows = []
        for how in ("whole", "pieces"):
            data = Path(tmp) / how
            data.mkdir()
            env = {
                **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
                "DJANGO_SETTINGS_MODULE": "ghostgpt.settings",
                "GHOSTGPT_DATA_DIR": str(data),
                "PYTHONPATH": str(ROOT),
            }
            subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], env=env, cwd=ROOT, check=True)
            measured = run_child(how, export, env)
            assert measured["conversations"] == conversations, measured
            rows.append((how, measured))
    lines = [
        f"Import of a {size_mb:.1f} MB ChatGPT export ({conversations} conversations), SQLite, one process each",
        "",
        "| read as | RSS after setup (MB) | peak RSS (MB) | the import's own (MB) | seconds |",
        "|---|---|---|---|---|",
    ]
    for how, m in rows:
        lines.append(
            f"| {how} | {m['before']:.0f} | {m['peak']:.0f} | {m['peak'] - m['before']:.0f} | {m['seconds']:.1f} |"
        )
    own = {how: m["peak"] - m["before"] for how, m in rows}
    lines += [
        "",
        f"pieces/whole (the import's own memory): {own['pieces'] / max(own['whole'], 1):.2f}; "
        f"pieces' own memory / file size: {own['pieces'] / size_mb:.2f}",
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
