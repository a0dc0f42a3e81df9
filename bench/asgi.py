"""Which ASGI server: Daphne (GhostGPT's first) against uvicorn (uvloop + httptools: what
`manage.py serve` runs now) and Granian, serving the same two applications, HTTP and
WebSocket, in one run (`--servers` also takes uvicorn-websockets: uvicorn with its other
WebSocket protocol on the same library, `websockets`' asyncio one instead of its sans-I/O one).

For each server, on 127.0.0.1 in front of the fake upstream (chat/tests/fake_upstream.py):
- the bare-Django floor (bench/floor_app.py) and GhostGPT (`ghostgpt.asgi:application`,
  SQLite, auth + limits + billing on): added latency of sequential keep-alive requests
  (JSON and SSE, p50 over the direct baseline), requests/s at 16 connections for a bounded
  time, and the server's CPU per request over that run;
- WebSocket: a dial-in agent (`manage.py run_agent`, a real process) connected to the
  server's /ws/agent serves model "agent" from the fake upstream, so each chat request
  crosses the server's WebSocket both ways: its p50 latency and requests/s at 16
  connections; and `--sockets` agent WebSockets opened at once (time until every one has
  its welcome message, failures, server memory per socket).
Every number is from this run, the servers running side by side and taking turns in every
measurement; the last columns divide by Daphne's.

    .venv/bin/python bench/asgi.py [--requests 150] [--seconds 10] [--sockets 200] [--output FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")

from gateway import ROUNDS, throughput, timed_requests  # noqa: E402
from gateway_sides import BODY, floor_server  # noqa: E402
from measure import cpu_seconds, percentile, report, rss_kb  # noqa: E402

from chat.tests.fake_upstream import FakeUpstream  # noqa: E402
from chat.tests.live import LiveServer, daphne_command, uvicorn_command  # noqa: E402

BIN = Path(sys.executable).parent


def granian_command(port: int, application: str) -> list[str]:
    return [
        *(str(BIN / "granian"), "--interface", "asginl", "--host", "127.0.0.1", "--port", str(port)),
        *("--loop", "uvloop", "--http", "1", "--workers", "1", "--backlog", "1024"),
        *("--no-access-log", "--log-level", "warning", application),
    ]


def uvicorn_ws(library: str) -> Callable[[int, str], list[str]]:
    """uvicorn with another WebSocket implementation (memory per open socket differs)."""

    def command(port: int, application: str) -> list[str]:
        line = uvicorn_command(port, application)
        line[line.index("--ws") + 1] = library
        return line

    return command


SERVERS: dict[str, Callable[[int, str], list[str]]] = {
    "daphne": daphne_command,
    "uvicorn": uvicorn_command,
    "granian": granian_command,
    "uvicorn-websockets": uvicorn_ws("websockets"),
}


def start_agent(server: LiveServer, token: str, upstream: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            *(sys.executable, "manage.py", "run_agent", "--server", server.base_url),
            *("--upstream", upstream, "--model", "gpt-4o", "--name", "bench"),
        ],
        cwd=ROOT,
        env={**server.env, "GHOSTGPT_AGENT_TOKEN": token},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    headers = {"Authorization": f"Bearer {server.api_key}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = httpx.get(server.base_url + "/api/connections", headers=headers, timeout=10).json()["data"]
        if any(row["name"] == "bench" for row in listed):
            return process
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the agent did not connect")


async def open_sockets(base_url: str, token: str, count: int, pid: int) -> dict[str, float]:
    """`count` agent WebSockets at once: seconds until each has its welcome, failures, memory."""
    url = base_url.replace("http://", "ws://") + "/ws/agent"
    before = rss_kb(pid)
    release = asyncio.Event()
    welcomed, failed = 0, 0
    everyone = asyncio.Event()

    async def one() -> None:
        nonlocal welcomed, failed
        try:
            async with websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=60
            ) as socket:
                message = await asyncio.wait_for(socket.recv(), 60)
                assert '"welcome"' in str(message)
                welcomed += 1
                if welcomed + failed == count:
                    everyone.set()
                await release.wait()
        except Exception:
            failed += 1
            if welcomed + failed == count:
                everyone.set()

    started = time.perf_counter()
    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(everyone.wait(), 90)
    seconds = time.perf_counter() - started
    during = rss_kb(pid)
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    kb = (during - before) / max(welcomed, 1)
    return {"welcomed": welcomed, "failed": count - welcomed, "seconds": seconds, "kb": kb}


class Stack:
    """One server's processes: the floor app and GhostGPT under it, a dial-in agent on
    GhostGPT's WebSocket."""

    def __init__(self, name: str, command: Callable[[int, str], list[str]], upstream: str) -> None:
        print(f"starting {name}...", file=sys.stderr)
        routes = {
            "upstreams": {"fast": {"base_url": upstream}},
            "models": {"gpt-4o": {"deployments": [{"upstream": "fast"}]}},
        }
        self.floor, floor_base = floor_server(upstream, command)
        self.server = LiveServer(
            command=command,
            routes=routes,
            env={"GHOSTGPT_PROBE_SECONDS": "0", "GHOSTGPT_AGENT_MODEL": "agent", "GHOSTGPT_SYSTEM_PROMPT": ""},
        )
        self.token = self.server._manage("create_agent_token", "--name", "bench").strip().splitlines()[-1]
        self.agent = start_agent(self.server, self.token, upstream)
        key = {"Authorization": f"Bearer {self.server.api_key}"}
        ghostgpt = f"{self.server.base_url}/v1/chat/completions"
        # side: (url, headers, body, pid whose CPU is counted)
        self.sides: dict[str, tuple[str, dict[str, str], dict[str, Any], int]] = {
            "floor": (f"{floor_base}/v1/chat/completions", {}, BODY, self.floor.pid),
            "ghostgpt": (ghostgpt, key, BODY, self.server.process.pid),
            "agent": (ghostgpt, key, {**BODY, "model": "agent"}, self.server.process.pid),
        }

    def stop(self) -> None:
        self.agent.terminate()
        self.floor.terminate()
        self.server.stop()


def measure(stacks: dict[str, Stack], upstream: str, args: argparse.Namespace) -> dict[str, dict[Any, Any]]:
    """Every number alternates between the servers (all running at once), so this machine's
    drift over the run falls on all of them alike: latency in 3 rounds, requests/s and CPU
    in ROUNDS rounds (the median of each)."""
    results: dict[str, dict[Any, Any]] = {name: {} for name in stacks}
    direct_url = f"{upstream}/chat/completions"
    with httpx.Client(timeout=30) as client:
        for stream in (False, True):
            mode = "sse" if stream else "json"
            times: dict[Any, list[float]] = {}
            for stack in stacks.values():
                for side in ("floor", "ghostgpt"):
                    url, headers, _, _ = stack.sides[side]
                    timed_requests(client, url, headers, stream, 20)  # warm up
            for _ in range(3):
                times.setdefault("direct", []).extend(
                    timed_requests(client, direct_url, {}, stream, args.requests // 3)
                )
                for name, stack in stacks.items():
                    for side in ("floor", "ghostgpt"):
                        url, headers, _, _ = stack.sides[side]
                        times.setdefault((name, side), []).extend(
                            timed_requests(client, url, headers, stream, args.requests // 3)
                        )
            direct = percentile(times["direct"], 50)
            for name in stacks:
                for side in ("floor", "ghostgpt"):
                    results[name][(side, mode)] = (percentile(times[(name, side)], 50) - direct) * 1000
        agent_times: dict[str, list[float]] = {name: [] for name in stacks}
        for round_ in range(3):
            for name, stack in stacks.items():
                url, headers, body, _ = stack.sides["agent"]
                for n in range((20 if round_ == 0 else 0) + args.requests // 3):
                    started = time.perf_counter()
                    response = client.post(url, json=body, headers=headers)
                    assert response.status_code == 200, response.text[:300]
                    if round_ or n >= 20:
                        agent_times[name].append(time.perf_counter() - started)
        for name in stacks:
            results[name][("agent", "json")] = statistics.median(agent_times[name]) * 1000
    rates: dict[Any, list[float]] = {}
    for _ in range(ROUNDS):
        for name, stack in stacks.items():
            for side, (url, headers, body, pid) in stack.sides.items():
                before, started = cpu_seconds(pid), time.perf_counter()
                rps = asyncio.run(throughput(url, headers, args.seconds / ROUNDS, 16, body))
                cpu = (cpu_seconds(pid) - before) / max(rps * (time.perf_counter() - started), 1) * 1000
                rates.setdefault((name, side, "rps"), []).append(rps)
                rates.setdefault((name, side, "cpu"), []).append(cpu)
    for (name, side, what), values in rates.items():
        results[name][(side, what)] = statistics.median(values)
    for name, stack in stacks.items():
        results[name]["sockets"] = asyncio.run(
            open_sockets(stack.server.base_url, stack.token, args.sockets, stack.server.process.pid)
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=10, help="per side and server, over all rounds")
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--servers", default="daphne,uvicorn,granian")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    fake = FakeUpstream()
    upstream = f"{fake.url}/ok/v1"
    stacks: dict[str, Stack] = {}
    try:
        for name in args.servers.split(","):
            stacks[name] = Stack(name, SERVERS[name], upstream)
        results = measure(stacks, upstream, args)
    finally:
        for stack in stacks.values():
            stack.stop()
        fake.close()
    rows = [
        ("floor: added latency, JSON p50 (ms)", ("floor", "json"), "{:.2f}", False),
        ("floor: added latency, SSE p50 (ms)", ("floor", "sse"), "{:.2f}", False),
        ("floor: requests/s, 16 connections", ("floor", "rps"), "{:.0f}", True),
        ("floor: server CPU per request (ms)", ("floor", "cpu"), "{:.2f}", False),
        ("GhostGPT: added latency, JSON p50 (ms)", ("ghostgpt", "json"), "{:.2f}", False),
        ("GhostGPT: added latency, SSE p50 (ms)", ("ghostgpt", "sse"), "{:.2f}", False),
        ("GhostGPT: requests/s, 16 connections", ("ghostgpt", "rps"), "{:.0f}", True),
        ("GhostGPT: server CPU per request (ms)", ("ghostgpt", "cpu"), "{:.2f}", False),
        ("WebSocket agent: chat latency p50 (ms)", ("agent", "json"), "{:.2f}", False),
        ("WebSocket agent: chat requests/s, 16 connections", ("agent", "rps"), "{:.0f}", True),
    ]
    names = list(results)
    lines = [
        f"{os.cpu_count()} CPUs; fake upstream on 127.0.0.1; one server process each; GhostGPT on SQLite, "
        f"auth + limits + billing on; {args.requests} sequential keep-alive requests per side (alternating), "
        f"{args.seconds:.0f} s at 16 connections in {ROUNDS} rounds (median); servers alternate in every "
        "measurement. Ratios: each server / Daphne (latency and CPU: lower is better; "
        "requests/s: higher is better).",
        "",
        "| | " + " | ".join(names) + " | " + " | ".join(f"{n} / daphne" for n in names if n != "daphne") + " |",
        "|---|" + "---:|" * (2 * len(names) - 1),
    ]
    for label, key, fmt, _ in rows:
        values = [results[n][key] for n in names]
        ratios = [f"{results[n][key] / results['daphne'][key]:.2f}x" for n in names if n != "daphne"]
        lines.append(f"| {label} | " + " | ".join(fmt.format(v) for v in values) + " | " + " | ".join(ratios) + " |")
    sockets = [results[n]["sockets"] for n in names]
    lines.append(
        f"| {args.sockets} agent WebSockets at once: all welcomed in (s) | "
        + " | ".join(f"{s['seconds']:.2f} ({s['failed']:.0f} failed)" for s in sockets)
        + " | "
        + " | ".join(f"{s['seconds'] / sockets[0]['seconds']:.2f}x" for s in sockets[1:])
        + " |"
    )
    lines.append(
        "| server memory per open WebSocket (KB) | "
        + " | ".join(f"{s['kb']:.0f}" for s in sockets)
        + " | "
        + " | ".join("—" for _ in sockets[1:])
        + " |"
    )
    return report("\n".join(lines), args.output)


if __name__ == "__main__":
    raise SystemExit(main())
