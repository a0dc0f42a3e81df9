"""The response cache's hit against the floor, in one run.

A fake OpenAI-compatible upstream on 127.0.0.1 (chat/tests/fake_upstream.py) answers the
recorded stream at once (/ok/) or 50 ms later (/delay50/: a model's think time). Measured
with sequential keep-alive requests in alternating rounds, JSON and SSE (to [DONE]):
- direct: the fast upstream itself (the zero of "added latency");
- floor: bench/floor_app.py (one async Django view forwarding to the fast upstream) — the
  floor's added latency;
- GhostGPT, cache off, to the fast upstream — its added latency (what the cache costs when
  nobody asks for it: compare with bench/results/gateway.md);
- GhostGPT to the 50 ms upstream, `x-ghostgpt-cache: use`, temperature 0: the first request
  is a miss, every measured one a hit — its TOTAL latency (no upstream is called).
Target: a hit's total latency <= the floor's added latency + 1 ms. GhostGPT: SQLite, one
`manage.py serve` process (`make run` defaults), a paying key (each request reserves and
settles; a hit at the cache price, 0). Loopback only, bounded in count.

    .venv/bin/python bench/response_cache.py [--requests 300] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from gateway_sides import BODY, floor_server, paying_key
from measure import percentile, report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")

ROUNDS = 15
QUIET_SECONDS = 0.2
ADMIN_KEY = "adm-bench-cache-" + "c" * 24
ASKED = {**BODY, "temperature": 0}


def timed(client: httpx.Client, url: str, headers: dict[str, str], body: dict[str, object], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.post(url, json=body, headers=headers)
        assert response.status_code == 200, response.text[:200]
        if body.get("stream"):
            assert response.text.rstrip().endswith("data: [DONE]"), response.text[-200:]
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    from chat.tests.fake_upstream import FakeUpstream
    from chat.tests.live import LiveServer, manage

    fake = FakeUpstream()
    folder = tempfile.TemporaryDirectory()
    routes = Path(folder.name) / "routes.json"
    routes.write_text(
        json.dumps(
            {
                "upstreams": {
                    "fast": {"base_url": f"{fake.url}/ok/v1"},
                    "thinking": {"base_url": f"{fake.url}/delay50/v1"},
                },
                "models": {
                    "gpt-4o": {"deployments": [{"upstream": "fast"}]},
                    "gpt-4o-thinking": {"deployments": [{"upstream": "thinking", "model": "gpt-4o"}]},
                },
            }
        )
    )
    server = LiveServer(
        env={"GHOSTGPT_ROUTES_FILE": str(routes), "GHOSTGPT_PROBE_SECONDS": "0", "GHOSTGPT_ADMIN_KEY": ADMIN_KEY}
    )
    token = paying_key(server, ADMIN_KEY, "bench-cache")
    manage(server, "set_price", "gpt-4o-thinking", "--prompt", "2.5", "--completion", "10")
    floor, floor_base = floor_server(f"{fake.url}/ok/v1")
    auth = {"Authorization": f"Bearer {token}"}
    sides = {
        "direct": (f"{fake.url}/ok/v1/chat/completions", {}, ASKED),
        "floor": (f"{floor_base}/v1/chat/completions", {}, ASKED),
        "cache off": (f"{server.base_url}/v1/chat/completions", auth, ASKED),
        "hit": (
            f"{server.base_url}/v1/chat/completions",
            {**auth, "x-ghostgpt-cache": "use"},
            {**ASKED, "model": "gpt-4o-thinking"},
        ),
        "upstream 50 ms": (f"{fake.url}/delay50/v1/chat/completions", {}, ASKED),
    }
    times: dict[tuple[str, bool], list[float]] = {}
    try:
        with httpx.Client(timeout=30) as client:
            for stream in (False, True):
                for name, (url, headers, body) in sides.items():
                    timed(client, url, headers, {**body, "stream": stream}, 10)  # warm up; the hit's miss
                    times[(name, stream)] = []
                check = client.post(
                    sides["hit"][0], json={**sides["hit"][2], "stream": stream}, headers=sides["hit"][1]
                )
                assert check.headers.get("x-ghostgpt-cache") == "hit", check.headers
                for _ in range(ROUNDS):
                    for name, (url, headers, body) in sides.items():
                        count = max(1, args.requests // ROUNDS) if name != "upstream 50 ms" else 2
                        times[(name, stream)] += timed(client, url, headers, {**body, "stream": stream}, count)
                        time.sleep(QUIET_SECONDS)
    finally:
        floor.terminate()
        server.stop()
        fake.close()
        folder.cleanup()

    def ms(name: str, stream: bool, q: float = 50) -> float:
        return percentile(times[(name, stream)], q) * 1000

    lines = [
        f"{os.cpu_count()} CPUs; {args.requests} sequential keep-alive requests per side in {ROUNDS} alternating "
        "rounds; GhostGPT: SQLite, one `manage.py serve` process, a paying key; entries in the database (no "
        "Redis) and the process's copy of recent ones (GHOSTGPT_RESPONSE_CACHE_LOCAL_BYTES), hits billed at the "
        "cache price (0).",
        "",
        "| p50 (p95) | direct | floor added | GhostGPT added, cache off | upstream at 50 ms | hit, total "
        "| hit <= floor added + 1 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for stream, label in ((False, "JSON"), (True, "SSE to [DONE]")):
        direct = ms("direct", stream)
        floor_added = ms("floor", stream) - direct
        off_added = ms("cache off", stream) - direct
        hit, hit95 = ms("hit", stream), ms("hit", stream, 95)
        met = "met" if hit <= floor_added + 1 else "missed"
        floor95, off95 = (ms(name, stream, 95) - ms("direct", stream, 95) for name in ("floor", "cache off"))
        lines.append(
            f"| {label} | {direct:.2f} ms | {floor_added:.2f} ms ({floor95:.2f}) "
            f"| {off_added:.2f} ms ({off95:.2f}) "
            f"| {ms('upstream 50 ms', stream):.2f} ms | {hit:.2f} ms ({hit95:.2f}) "
            f"| {hit:.2f} <= {floor_added + 1:.2f}: {met} |"
        )
    return report("\n".join(lines), args.output)


if __name__ == "__main__":
    raise SystemExit(main())
