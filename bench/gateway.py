"""Gateway overhead: what GhostGPT adds in front of a fast upstream, against LiteLLM's proxy
and the budget in the architecture, in one run.

A fake OpenAI-compatible upstream on 127.0.0.1 answers at once with a recorded
api.openai.com stream (chat/tests/fake_upstream.py). The same requests go straight to it,
through GhostGPT (auth, rate limit, price, reservation, routing, encoding, settlement all
on; SQLite, one `manage.py serve` process — uvicorn — `make run` defaults) and through LiteLLM's proxy (one
worker, no database; installed by this script into bench/.venv-litellm, pinned):
- added latency, sequential keep-alive requests alternating between the sides in 15 short
  rounds with a short pause after each side's,
  non-streaming (JSON) and streaming (SSE until [DONE]): p50 / p95 / p99;
- requests per second at 16 concurrent keep-alive connections, for a bounded time;
- 1,000 concurrent idle SSE streams through GhostGPT (the upstream sends headers, then
  nothing): how many opened, errors, and the server's memory per open stream;
- the floor a Django gateway can reach (bench/floor_app.py: one async view forwarding the
  body with a shared httpx client under the same server — uvicorn on uvloop + httptools —
  nothing else) measured the same
  way: GhostGPT's added latency and requests/s against it.
Targets: GhostGPT's added latency <= 0.5x LiteLLM's; <= 1.3x the floor's (JSON and SSE) and
requests/s >= 0.85x the floor's. Loopback only, bounded in count and time.

    .venv/bin/python bench/gateway.py [--requests 300] [--seconds 10] [--streams 1000] [--output FILE]
        [--no-litellm] [--baseline OTHER_CHECKOUT]

`--baseline`: a checkout of another revision (`git worktree add /tmp/base REV`) runs its
GhostGPT beside this one in the same rounds, and a paired table compares the two — a
before/after that the host's drift cannot decide.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from gateway_sides import BODY, LITELLM, LITELLM_KEY, floor_server, litellm_proxy, paying_key
from measure import cpu_seconds, percentile, report, rss_kb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")

ROUNDS = 5  # requests/s: alternating rounds per side, the median of each
LATENCY_ROUNDS = 15  # added latency: alternating rounds of requests / 15 per side
QUIET_SECONDS = 0.3  # a pause after each side's round
ADMIN_KEY = "adm-bench-gateway-" + "b" * 24


def timed_requests(client: httpx.Client, url: str, headers: dict[str, str], stream: bool, count: int) -> list[float]:
    times = []
    body = {**BODY, "stream": stream}
    for _ in range(count):
        started = time.perf_counter()
        response = client.post(url, json=body, headers=headers)
        assert response.status_code == 200, response.text[:200]
        if stream:
            assert response.text.rstrip().endswith("data: [DONE]"), response.text[-200:]
        times.append(time.perf_counter() - started)
    return times


async def throughput(
    url: str, headers: dict[str, str], seconds: float, connections: int, body: dict[str, Any] | None = None
) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            response = await client.post(url, json=body or BODY, headers=headers)
            assert response.status_code == 200, response.text[:300]
            done += 1

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        return done / (time.perf_counter() - started)


async def idle_streams(url: str, headers: dict[str, str], count: int, pid: int) -> dict[str, float]:
    """Open `count` SSE streams at once to a model whose upstream stays silent; measure."""
    before = rss_kb(pid)
    opened, errors = 0, 0
    reasons: Counter[str] = Counter()
    all_open = asyncio.Event()
    release = asyncio.Event()
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=30), limits=limits) as client:

        async def one() -> None:
            nonlocal opened, errors
            try:
                body = {**BODY, "model": "idle", "stream": True}
                async with client.stream("POST", url, json=body, headers=headers) as response:
                    if response.status_code != 200:
                        errors += 1
                        reasons[f"HTTP {response.status_code}: {(await response.aread())[:120]!r}"] += 1
                        return
                    opened += 1
                    if opened + errors == count:
                        all_open.set()
                    await release.wait()
            except httpx.HTTPError as exc:
                errors += 1
                reasons[type(exc).__name__] += 1
            finally:
                if opened + errors == count:
                    all_open.set()

        started = time.perf_counter()
        tasks = [asyncio.ensure_future(one()) for _ in range(count)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_open.wait(), 60)
        open_seconds = time.perf_counter() - started
        await asyncio.sleep(2)
        during = rss_kb(pid)
        release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "opened": opened,
        "errors": errors + (count - opened - errors),
        "seconds": open_seconds,
        "kb_per_stream": (during - before) / max(opened, 1),
        "rss_before_mb": before / 1024,
        "rss_during_mb": during / 1024,
        "reasons": "; ".join(f"{n}x {why}" for why, n in reasons.most_common(3)) or "none",
    }


def budgets_on_path(server: object, token: str) -> None:
    """A key, a member and an account budget (large: none refuses) on the paying key's path."""
    from chat.tests.live import manage

    manage(  # type: ignore[arg-type]
        server,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from chat.models import ApiKey, Budget, hash_api_key; "
        f"key = ApiKey.objects.get(key_hash=hash_api_key({token!r})); "
        "user = get_user_model().objects.create_user('bench-member'); key.user = user; key.save(); "
        "big = 10**8; "
        "Budget.objects.create(account=key.account, scope='key', key=key, amount=big, period='day'); "
        "Budget.objects.create(account=key.account, scope='member', user=user, amount=big, period='week'); "
        "Budget.objects.create(account=key.account, scope='account', amount=big, period='month')",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--no-litellm", action="store_true", help="GhostGPT and the upstream only (quick runs)")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. `git worktree add /tmp/base REV`): its GhostGPT runs beside this one, "
        "same routes, price and account, in the same alternating rounds; a paired table compares them",
    )
    parser.add_argument(
        "--budgets",
        action="store_true",
        help="this checkout's paying key with a key, a member and an account budget on its path (the baseline's "
        "without: run with --baseline a copy of this checkout to measure what budgets add)",
    )
    args = parser.parse_args()

    from chat.tests.fake_upstream import FakeUpstream
    from chat.tests.live import LiveServer

    fake = FakeUpstream()
    folder = tempfile.TemporaryDirectory()
    workdir = Path(folder.name)
    routes = workdir / "routes.json"
    routes.write_text(
        json.dumps(
            {
                "upstreams": {
                    "fast": {"base_url": f"{fake.url}/ok/v1"},
                    "silent": {"base_url": f"{fake.url}/slow/v1", "max_connections": args.streams + 100},
                },
                "models": {
                    "gpt-4o": {"deployments": [{"upstream": "fast"}]},
                    "idle": {"deployments": [{"upstream": "silent"}]},
                },
            }
        )
    )

    def gateway(root: Path | None = None) -> tuple[LiveServer, str]:
        server = LiveServer(
            env={
                "GHOSTGPT_ROUTES_FILE": str(routes),
                "GHOSTGPT_LOG_LEVEL": "WARNING",
                "GHOSTGPT_PROBE_SECONDS": "0",
                "GHOSTGPT_ADMIN_KEY": ADMIN_KEY,
            },
            root=root,
        )
        return server, paying_key(server, ADMIN_KEY, "bench-gateway")

    server, token = gateway()
    if args.budgets:
        budgets_on_path(server, token)
    sides = {
        "direct": (f"{fake.url}/ok/v1/chat/completions", {}),
        "ghostgpt": (f"{server.base_url}/v1/chat/completions", {"Authorization": f"Bearer {token}"}),
    }
    baseline = None
    if args.baseline:
        baseline, baseline_token = gateway(args.baseline.resolve())
        sides["baseline"] = (f"{baseline.base_url}/v1/chat/completions", {"Authorization": f"Bearer {baseline_token}"})
    floor, floor_base = floor_server(f"{fake.url}/ok/v1")
    sides["floor"] = (f"{floor_base}/v1/chat/completions", {})
    litellm = None
    if not args.no_litellm:
        litellm, litellm_base = litellm_proxy(f"{fake.url}/ok/v1", workdir)
        sides["litellm"] = (f"{litellm_base}/v1/chat/completions", {"Authorization": f"Bearer {LITELLM_KEY}"})
    times: dict[tuple[str, bool], list[float]] = {}
    rps: dict[str, float] = {}
    cpu_ms: dict[str, float] = {}
    try:
        with httpx.Client(timeout=30) as client:
            for stream in (False, True):
                for name, (url, headers) in sides.items():
                    timed_requests(client, url, headers, stream, 20)  # warm up
                    times[(name, stream)] = []
                # Many short alternating rounds: on this shared VM the host's speed drifts over
                # seconds, and in three long rounds the floor and GhostGPT drew different moments
                # (the same code measured 1.41x and 1.85x of the floor in two runs).
                # Each round then starts on a quiet machine: LiteLLM goes on working (logging,
                # spend tracking) after its answers, and that work landed in the next side's round.
                for _ in range(LATENCY_ROUNDS):
                    for name, (url, headers) in sides.items():
                        times[(name, stream)] += timed_requests(
                            client, url, headers, stream, max(1, args.requests // LATENCY_ROUNDS)
                        )
                        time.sleep(QUIET_SECONDS)
        pids = {"ghostgpt": server.process.pid, "floor": floor.pid, **({"litellm": litellm.pid} if litellm else {})}
        if baseline is not None:
            pids["baseline"] = baseline.process.pid
        # Alternating rounds, the median per side: on shared cores one long run per side
        # moved with whatever else the machine did at that moment (ratios from 0.64 to 1.05).
        rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        for _ in range(ROUNDS):
            for name, (url, headers) in sides.items():
                before = cpu_seconds(pids[name]) if name in pids else 0.0
                started = time.perf_counter()
                done = asyncio.run(throughput(url, headers, args.seconds / ROUNDS, 16))
                served = done * (time.perf_counter() - started)
                spent = (cpu_seconds(pids[name]) - before) / max(served, 1) * 1000 if name in pids else 0.0
                rounds[name].append((done, spent))
        for name, measured in rounds.items():
            rps[name] = statistics.median(done for done, _ in measured)
            cpu_ms[name] = statistics.median(spent for _, spent in measured)
        idle = asyncio.run(idle_streams(sides["ghostgpt"][0], sides["ghostgpt"][1], args.streams, server.process.pid))
    finally:
        floor.terminate()
        if litellm is not None:
            litellm.terminate()
        server.stop()
        if baseline is not None:
            baseline.stop()
        fake.close()
        folder.cleanup()

    def added(name: str, stream: bool, q: float) -> float:
        return (percentile(times[(name, stream)], q) - percentile(times[("direct", stream)], q)) * 1000

    lines = [
        f"{os.cpu_count()} CPUs; fake upstream replaying a recorded OpenAI stream; {args.requests} sequential "
        f"keep-alive requests per side, in {LATENCY_ROUNDS} alternating rounds; GhostGPT: SQLite, "
        "one `manage.py serve` (uvicorn) process, "
        "auth + limits + billing on (gpt-4o priced, the account funded: each request reserves and settles); "
        f"LiteLLM {LITELLM.split('==')[1]} proxy, one worker, master key, no database.",
        "",
        "| added latency | GhostGPT p50 / p95 / p99 | LiteLLM p50 / p95 / p99 | ratio at p50 (target <= 0.5) |",
        "|---|---|---|---|",
    ]
    ratios = {}
    for stream, label in ((False, "non-streaming (JSON)"), (True, "streaming (SSE to [DONE])")):
        ours = [added("ghostgpt", stream, q) for q in (50, 95, 99)]
        theirs = [added("litellm", stream, q) if litellm else float("nan") for q in (50, 95, 99)]
        ratios[stream] = ours[0] / theirs[0] if theirs[0] > 0 else float("inf")
        verdict = "met" if ratios[stream] <= 0.5 else "missed"
        lines.append(
            f"| {label} | {' / '.join(f'{v:.2f}' for v in ours)} ms | {' / '.join(f'{v:.2f}' for v in theirs)} ms "
            f"| {ratios[stream]:.2f}x ({verdict}) |"
        )
    direct_ms = {s: statistics.median(times[("direct", s)]) * 1000 for s in (False, True)}
    lines += [
        "",
        f"Direct to the upstream (the baseline, medians): JSON {direct_ms[False]:.2f} ms, "
        f"SSE {direct_ms[True]:.2f} ms.",
        "",
        f"| requests/s at 16 connections ({ROUNDS} alternating rounds of {args.seconds / ROUNDS:.1f} s, median) "
        "| direct | GhostGPT | LiteLLM | GhostGPT / LiteLLM |",
        "|---|---|---|---|---|",
        f"| non-streaming | {rps['direct']:.0f} | {rps['ghostgpt']:.0f} | {rps.get('litellm', float('nan')):.0f} "
        f"| {rps['ghostgpt'] / rps.get('litellm', float('nan')):.2f}x |",
        "",
        f"| {args.streams} concurrent idle SSE streams through GhostGPT | value |",
        "|---|---|",
        f"| opened (200 + headers) | {idle['opened']} in {idle['seconds']:.1f} s |",
        f"| errors | {idle['errors']} ({idle['reasons']}) |",
        f"| server memory | {idle['rss_before_mb']:.0f} MB → {idle['rss_during_mb']:.0f} MB |",
        f"| memory per open stream | {idle['kb_per_stream']:.0f} KB |",
    ]
    floor_ratio = {s: added("ghostgpt", s, 50) / added("floor", s, 50) for s in (False, True)}
    rps_ratio = rps["ghostgpt"] / rps["floor"]
    lines += [
        "",
        "| GhostGPT against the bare-Django floor (same server, same run) | floor | GhostGPT | ratio | target |",
        "|---|---|---|---|---|",
        f"| added latency, JSON, p50 | {added('floor', False, 50):.2f} ms | {added('ghostgpt', False, 50):.2f} ms "
        f"| {floor_ratio[False]:.2f}x | <= 1.3x ({'met' if floor_ratio[False] <= 1.3 else 'missed'}) |",
        f"| added latency, SSE, p50 | {added('floor', True, 50):.2f} ms | {added('ghostgpt', True, 50):.2f} ms "
        f"| {floor_ratio[True]:.2f}x | <= 1.3x ({'met' if floor_ratio[True] <= 1.3 else 'missed'}) |",
        f"| requests/s at 16 connections | {rps['floor']:.0f} | {rps['ghostgpt']:.0f} | {rps_ratio:.2f}x "
        f"| >= 0.85x ({'met' if rps_ratio >= 0.85 else 'missed'}) |",
        f"| server CPU per request at 16 connections | {cpu_ms['floor']:.2f} ms | {cpu_ms['ghostgpt']:.2f} ms "
        f"| {cpu_ms['ghostgpt'] / cpu_ms['floor']:.2f}x | — |",
    ]
    if baseline is not None:
        lines += [
            "",
            f"| this checkout against {args.baseline} (same run, same rounds) | baseline | this | baseline x floor "
            "| this x floor |",
            "|---|---|---|---|---|",
        ]
        for stream, label in ((False, "added latency, JSON, p50"), (True, "added latency, SSE, p50")):
            theirs, ours, floor_ms = (
                added("baseline", stream, 50),
                added("ghostgpt", stream, 50),
                added("floor", stream, 50),
            )
            lines.append(
                f"| {label} | {theirs:.2f} ms | {ours:.2f} ms | {theirs / floor_ms:.2f}x | {ours / floor_ms:.2f}x |"
            )
        lines += [
            f"| requests/s at 16 connections | {rps['baseline']:.0f} | {rps['ghostgpt']:.0f} "
            f"| {rps['baseline'] / rps['floor']:.2f}x | {rps_ratio:.2f}x |",
            f"| server CPU per request at 16 connections | {cpu_ms['baseline']:.2f} ms | {cpu_ms['ghostgpt']:.2f} ms "
            "| — | — |",
        ]
    return report("\n".join(lines), args.output)


if __name__ == "__main__":
    raise SystemExit(main())
