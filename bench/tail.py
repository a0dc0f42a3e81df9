"""The latency tail under load: p50 and p99 of GhostGPT and of the bare-Django floor
(bench/floor_app.py) at 16 and 64 keep-alive connections, driven by wrk (Debian's package:
`make bench` installs it), in front of the same fast fake upstream (a recorded OpenAI
answer, chat/tests/fake_upstream.py).

GhostGPT runs as `make run` runs it (one `manage.py serve` process; auth, rate limits,
price, reservation and settlement on, a funded account's key), on SQLite or PostgreSQL
(`--database`). Per connection count: a warm-up, then `--rounds` rounds of `--seconds`
each, the two sides alternating; the medians of each side's rounds are reported.
Targets (issue 30): at 16 connections GhostGPT's p99 <= 3x its p50, or no worse than 1.5x
the floor's own p99/p50. Loopback only, bounded in time.

    .venv/bin/python bench/tail.py [--database sqlite|postgres] [--seconds 30] [--rounds 3]
        [--warmup 5] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from gateway_sides import BODY, floor_server, paying_key
from measure import report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")
ADMIN_KEY = "adm-bench-tail-" + "t" * 24
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_script(folder: Path, headers: dict[str, str]) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(BODY))}"]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    lines += [f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}" for name, value in headers.items()]
    # A non-2xx answer would be a fast failure, not a latency: count them.
    lines.append("function response(status) if status ~= 200 then errors = (errors or 0) + 1 end end")
    path = folder / f"post-{len(headers)}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk(url: str, script: Path, connections: int, seconds: float) -> dict[str, float]:
    """One wrk run: p50, p99 (ms), requests/s, non-2xx answers."""
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{round(seconds)}s", "--latency", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    found = {}
    for share, name in (("50%", "p50"), ("99%", "p99")):
        match = re.search(rf"^\s*{re.escape(share)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        found[name] = float(match.group(1)) * UNITS[match.group(2)]
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    found["rps"] = float(rate.group(1)) if rate else 0.0
    found["non_2xx"] = float(bad.group(1)) if bad else 0.0
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--connections", default="16,64")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    from chat.tests.fake_upstream import FakeUpstream
    from chat.tests.live import LiveServer

    fake = FakeUpstream()
    folder = tempfile.TemporaryDirectory(prefix="ghostgpt-tail-")  # wrk's scripts
    workdir = Path(folder.name)
    routes = {
        "upstreams": {"fast": {"base_url": f"{fake.url}/ok/v1"}},
        "models": {"gpt-4o": {"deployments": [{"upstream": "fast"}]}},
    }
    env = {"GHOSTGPT_LOG_LEVEL": "WARNING", "GHOSTGPT_PROBE_SECONDS": "0", "GHOSTGPT_ADMIN_KEY": ADMIN_KEY}
    if args.database == "sqlite":
        env["DATABASE_URL"] = ""  # SQLite in the server's own data directory
    # PostgreSQL: a fresh database of its own on that server, dropped afterwards.
    server = LiveServer(routes=routes, env=env, postgres_url=POSTGRES if args.database == "postgres" else None)
    floor, floor_base = floor_server(f"{fake.url}/ok/v1")
    try:
        token = paying_key(server, ADMIN_KEY, "bench-tail")
        sides = {
            "floor": (f"{floor_base}/v1/chat/completions", wrk_script(workdir, {})),
            "ghostgpt": (
                f"{server.base_url}/v1/chat/completions",
                wrk_script(workdir, {"Authorization": f"Bearer {token}"}),
            ),
        }
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        counts = [int(c) for c in args.connections.split(",")]
        for connections in counts:
            for url, script in sides.values():
                wrk(url, script, connections, args.warmup)
            for _ in range(args.rounds):
                for name, (url, script) in sides.items():
                    results.setdefault((name, connections), []).append(wrk(url, script, connections, args.seconds))
    finally:
        floor.kill()
        server.stop()
        fake.close()
        folder.cleanup()

    def median(name: str, connections: int, field: str) -> float:
        return statistics.median(run[field] for run in results[(name, connections)])

    lines = [
        f"Latency tail: wrk, {args.rounds} x {args.seconds:.0f} s per side and connection count after a "
        f"{args.warmup:.0f} s warm-up, alternating; medians. GhostGPT on {args.database}, one process.",
        "",
        "| connections | side | p50 | p99 | p99 / p50 | requests/s | non-2xx |",
        "|---|---|---|---|---|---|---|",
    ]
    for connections in counts:
        for name in sides:
            p50, p99 = median(name, connections, "p50"), median(name, connections, "p99")
            failed = sum(run["non_2xx"] for run in results[(name, connections)])
            lines.append(
                f"| {connections} | {name} | {p50:.1f} ms | {p99:.1f} ms | {p99 / p50:.2f} "
                f"| {median(name, connections, 'rps'):.0f} | {failed:.0f} |"
            )
    ours = median("ghostgpt", 16, "p99") / median("ghostgpt", 16, "p50")
    floors = median("floor", 16, "p99") / median("floor", 16, "p50")
    met = ours <= 3 or ours <= 1.5 * floors
    lines += [
        "",
        f"At 16 connections GhostGPT's p99/p50 is {ours:.2f} (target <= 3, or <= 1.5 x the floor's {floors:.2f} "
        f"= {1.5 * floors:.2f}): {'met' if met else 'NOT met'}.",
    ]
    return report("\n".join(lines), args.output)


if __name__ == "__main__":
    sys.exit(main())
