"""Gateway overhead: what GhostGPT adds in front of a fast upstream, against the budget in
the architecture (<= 6.5 ms JSON / <= 15 ms SSE added, >= 180 RPS at 16 connections).

A fake OpenAI-compatible upstream on 127.0.0.1 answers instantly with a recorded
api.openai.com stream (chat/tests/fake_upstream.py). The same request is timed directly
against it and through GhostGPT (auth, rate limit, price, reservation, routing, encoding,
settlement all on; SQLite, one Daphne process, `make run` defaults), in the same run:
- added latency, sequential keep-alive requests, non-streaming (JSON) and streaming (SSE
  until [DONE]); medians;
- requests per second through GhostGPT with 16 concurrent keep-alive connections.

    .venv/bin/python bench/gateway.py [--requests 300] [--seconds 10] [--output bench/results/gateway.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Weather?"}], "max_tokens": 64}


def timed_requests(client: httpx.Client, url: str, headers: dict[str, str], stream: bool, count: int) -> list[float]:
    times = []
    body = {**BODY, "stream": stream}
    for _ in range(count):
        started = time.perf_counter()
        response = client.post(url, json=body, headers=headers)
        assert response.status_code == 200, response.text[:200]
        if stream:
            assert response.text.rstrip().endswith("data: [DONE]")
        times.append(time.perf_counter() - started)
    return times


async def throughput(url: str, headers: dict[str, str], seconds: float, connections: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            response = await client.post(url, json=BODY, headers=headers)
            assert response.status_code == 200
            done += 1

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        return done / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    from chat.tests.fake_upstream import FakeUpstream
    from chat.tests.live import LiveServer

    fake = FakeUpstream()
    folder = tempfile.TemporaryDirectory()
    routes = Path(folder.name) / "routes.json"
    routes.write_text(
        json.dumps(
            {
                "upstreams": {"fast": {"base_url": f"{fake.url}/ok/v1"}},
                "models": {"gpt-4o": {"deployments": [{"upstream": "fast"}]}},
            }
        )
    )
    server = LiveServer(env={"GHOSTGPT_ROUTES_FILE": str(routes), "GHOSTGPT_LOG_LEVEL": "WARNING"})
    try:
        direct_url, gateway_url = f"{fake.url}/ok/v1/chat/completions", f"{server.base_url}/v1/chat/completions"
        auth = {"Authorization": f"Bearer {server.api_key}"}
        results: dict[str, list[float]] = {}
        with httpx.Client(timeout=30) as client:
            for stream in (False, True):
                timed_requests(client, gateway_url, auth, stream, 20)  # warm up
                direct, through = [], []
                for _ in range(3):  # alternate the two sides
                    direct += timed_requests(client, direct_url, {}, stream, args.requests // 3)
                    through += timed_requests(client, gateway_url, auth, stream, args.requests // 3)
                results["sse" if stream else "json"] = [statistics.median(direct), statistics.median(through)]
        rps = asyncio.run(throughput(gateway_url, auth, args.seconds, 16))
    finally:
        server.stop()
        fake.close()
        folder.cleanup()

    json_added = (results["json"][1] - results["json"][0]) * 1000
    sse_added = (results["sse"][1] - results["sse"][0]) * 1000
    lines = [
        f"{os.cpu_count()} CPUs; fake upstream replaying a recorded OpenAI stream (34 chunks); medians of "
        f"{args.requests} sequential keep-alive requests per side, alternating; SQLite; one Daphne process",
        "",
        "| measure | direct to the upstream | through GhostGPT | added | budget |",
        "|---|---|---|---|---|",
        f"| non-streaming (JSON) | {results['json'][0] * 1000:.2f} ms | {results['json'][1] * 1000:.2f} ms "
        f"| {json_added:.2f} ms | <= 6.5 ms ({'met' if json_added <= 6.5 else 'missed'}) |",
        f"| streaming (SSE to [DONE]) | {results['sse'][0] * 1000:.2f} ms | {results['sse'][1] * 1000:.2f} ms "
        f"| {sse_added:.2f} ms | <= 15 ms ({'met' if sse_added <= 15 else 'missed'}) |",
        f"| requests/s, 16 connections, {args.seconds:.0f} s | | {rps:.0f} | | >= 180 "
        f"({'met' if rps >= 180 else 'missed'}) |",
    ]
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
