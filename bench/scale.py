"""Sizing `make up`: what one web process carries, and what a second one adds behind nginx.

The topology is brought up with `make up` itself (a fresh PostgreSQL database, Redis, nginx,
the model server, worker and beat) twice, WEB_PROCESSES=1 and 2, measured in alternation. The gateway
path is measured against a fast upstream: a second nginx on loopback answering every
POST with a recorded chat.completion at once, routed as model `fast` (UP_ROUTES_FILE), so
what is measured is GhostGPT (auth, limits, billing, metrics, logging) and not a model.
`fast` has a price and the key's account a balance: each request reserves and settles.

- requests/s and latency p50/p99 with wrk (Debian's package; 16 and 32 connections, 10 s),
  through nginx, and to the web process directly with one process;
- PostgreSQL transactions and Redis commands per request (pg_stat_database, INFO stats;
  Redis's idle rate — beat, the worker's polling — measured for as long and subtracted);
- idle streams: 400 SSE streams held open on a model that is slow to answer (headers, then
  silence), the web processes' memory per stream (VmRSS), and whether every one stayed open.

    .venv/bin/python bench/scale.py [--seconds 10] [--output bench/results/scale.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IDLE_STREAMS = 400


def run(command: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


class FastUpstream:
    """nginx answering every POST at once with the chat.completion JSON the recorded stream
    adds up to — what OpenAI answers the gateway's `stream: false` request for a JSON client
    (wrk's requests are JSON): a static file, which nginx's static module refuses to POST
    (405) and `error_page 405 =200` then serves as a GET within the same request — no second
    hop, so that the upstream costs next to nothing beside what is measured."""

    def __init__(self, folder: Path, port: int) -> None:
        from chat.tests.fake_upstream import collected, recorded_chunks

        self.port = port
        answer = json.dumps(collected(recorded_chunks()))
        (folder / "answer.json").write_text(answer)
        folder.chmod(0o755)  # nginx's workers (www-data) read it
        (folder / "answer.json").chmod(0o644)
        self.conf = folder / "fast-upstream.conf"
        self.conf.write_text(
            f"""worker_processes 1; pid {folder}/fast.pid; error_log {folder}/fast-error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {folder}/fast-body; proxy_temp_path {folder}/fast-proxy;
  fastcgi_temp_path {folder}/fast-fcgi; uwsgi_temp_path {folder}/fast-uwsgi; scgi_temp_path {folder}/fast-scgi;
  server {{ listen 127.0.0.1:{port}; keepalive_requests 100000;
    root {folder}; location / {{ default_type application/json; rewrite ^ /answer.json break;
      error_page 405 =200 $uri; }} }} }}
"""
        )
        self.process = subprocess.Popen(["/usr/sbin/nginx", "-c", str(self.conf), "-g", "daemon off;"])
        time.sleep(0.5)
        if self.process.poll() is not None:
            raise RuntimeError(f"the fast upstream did not start: {(folder / 'fast-error.log').read_text()}")
        served = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={})
        assert served.text == answer and served.headers["content-type"] == "application/json", served.headers

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Up:
    def __init__(self, folder: Path, processes: int, database_url: str, routes: Path) -> None:
        import secrets
        from decimal import Decimal

        from chat.tests.live import free_base_port, free_port, funded_account

        self.folder = folder / f"up-{processes}"
        self.port, self.base = free_port(), free_base_port()
        self.url = f"http://127.0.0.1:{self.port}"
        admin_key = "adm-" + secrets.token_urlsafe(32)
        self.env = {**os.environ, "UP_ROUTES_FILE": str(routes), "GHOSTGPT_ADMIN_KEY": admin_key}
        self.vars = [
            f"UP_DIR={self.folder}",
            f"UP_PORT={self.port}",
            f"UP_BASE_PORT={self.base}",
            f"WEB_PROCESSES={processes}",
            f"UP_DATABASE_URL={database_url}",
            "UP_REDIS_URL=redis://127.0.0.1:6379/0",
        ]
        run(["make", "--no-print-directory", "up", *self.vars], env=self.env)
        self.database_url = database_url
        self.web = [f"http://127.0.0.1:{self.base + n}" for n in range(processes)]
        manage_env = {
            **self.env,
            "DATABASE_URL": database_url,
            "GHOSTGPT_DATA_DIR": str(self.folder / "nodes" / "make"),
        }
        # `fast` is priced and the key's account funded: every request reserves its worst case
        # and settles, as a paying key holder's does.
        run([sys.executable, "manage.py", "set_price", "fast", "--prompt", "2.5", "--completion", "10"], env=manage_env)
        self.account, self.key = funded_account(self.url, admin_key, f"scale-{processes}", Decimal(1_000_000))

    def pids(self) -> list[int]:
        conf = self.folder / "supervisord.conf"
        ctl = str(Path(sys.executable).with_name("supervisorctl"))
        return [int(run([ctl, "-c", str(conf), "pid", f"web-{n + 1}"]).strip()) for n in range(len(self.web))]

    def down(self) -> None:
        run(["make", "--no-print-directory", "down", *self.vars], env=self.env)


def wrk(url: str, key: str, connections: int, seconds: int, folder: Path) -> dict[str, float]:
    script = folder / "post.lua"
    body = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50})
    script.write_text(
        f"""wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %f %f\\n", summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
    )
    out = run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url + "/v1/chat/completions",
        ]
    )
    match = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)", out)
    assert match, out
    requests, bad_status, socket_errors, p50, p99 = match.groups()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {
        "rps": rps,
        "requests": int(requests),
        "errors": int(bad_status) + int(socket_errors),
        "p50": float(p50) / 1e6,  # wrk reports microseconds
        "p99": float(p99) / 1e6,
    }


def counters(database_url: str) -> tuple[int, int]:
    import psycopg
    import redis

    with psycopg.connect(database_url) as conn:
        name = conn.info.dbname
        commits = conn.execute(
            "select xact_commit + xact_rollback from pg_stat_database where datname = %s", [name]
        ).fetchone()[0]
    commands = redis.Redis.from_url("redis://127.0.0.1:6379/0").info("stats")["total_commands_processed"]
    return int(commits), int(commands)


def per_request(up: Up, folder: Path) -> dict[str, float]:
    """Transactions and Redis commands per request, idle rates subtracted."""
    idle_start, t0 = counters(up.database_url), time.monotonic()
    time.sleep(5)
    idle_end, idle_seconds = counters(up.database_url), time.monotonic() - t0
    start, t1 = counters(up.database_url), time.monotonic()
    result = wrk(up.url, up.key, 8, 5, folder)
    end, seconds = counters(up.database_url), time.monotonic() - t1
    rates = [(b - a) / idle_seconds for a, b in zip(idle_start, idle_end, strict=True)]
    spent = [(b - a) - rate * seconds for a, b, rate in zip(start, end, rates, strict=True)]
    return {"pg": spent[0] / result["requests"], "redis": spent[1] / result["requests"]}


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds_by_component(web: list[int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by every running process on the machine,
    grouped: the web processes, nginx (front and fast upstream), PostgreSQL, Redis, and the
    rest (wrk is not running between runs: `measured` reads it from RUSAGE_CHILDREN)."""
    totals: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        if int(entry.name) in web:
            group = "web"
        elif name.startswith("nginx"):
            group = "nginx"
        elif name.startswith("postgres"):
            group = "postgres"
        elif name.startswith("redis"):
            group = "redis"
        else:
            group = "other"
        totals[group] = totals.get(group, 0.0) + seconds
    return totals


def measured(up: Up, url: str, connections: int, seconds: int, folder: Path) -> dict[str, Any]:
    """A wrk run with the CPU each component spent per request (ms). wrk's own threads are
    children of this process and finish with it, so they are read from RUSAGE_CHILDREN."""
    import resource

    pids = up.pids()
    before, children = cpu_seconds_by_component(pids), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = wrk(url, up.key, connections, seconds, folder)
    after, children_after = cpu_seconds_by_component(pids), resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = {group: after.get(group, 0.0) - before.get(group, 0.0) for group in after}
    spent["wrk"] = (children_after.ru_utime + children_after.ru_stime) - (children.ru_utime + children.ru_stime)
    requests = max(result["requests"], 1)
    result["cpu_ms"] = {group: value * 1000 / requests for group, value in spent.items()}
    return result


def rss_kb(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))  # type: ignore[union-attr]


async def hold_streams(up: Up, count: int) -> tuple[int, float]:
    """`count` streams on the slow model, held open together: (how many got their headers
    and stayed open for 5 s, web memory per stream in KB)."""
    pids = up.pids()
    before = sum(rss_kb(pid) for pid in pids)
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {up.key}"}, timeout=60, limits=limits) as client:
        opened: list[Any] = []

        async def open_one() -> None:
            request = client.build_request("POST", up.url + "/v1/chat/completions", json=body)
            response = await client.send(request, stream=True)
            opened.append(response)

        await asyncio.gather(*(open_one() for _ in range(count)), return_exceptions=True)
        await asyncio.sleep(5)
        held = sum(1 for r in opened if r.status_code == 200 and not r.is_closed)
        after = sum(rss_kb(pid) for pid in pids)
        for response in opened:
            await response.aclose()
    return held, (after - before) / max(count, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each setup; the median is shown")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")
    from chat.tests.fake_upstream import FakeUpstream
    from chat.tests.live import _Database, books, free_port

    folder = Path(tempfile.mkdtemp(prefix="scale-"))
    fast = FastUpstream(folder, free_port())
    slow = FakeUpstream()
    routes = folder / "routes.json"
    routes.write_text(
        json.dumps(
            {
                "upstreams": {
                    "fast": {"base_url": f"http://127.0.0.1:{fast.port}/v1", "max_connections": 1000},
                    "slow": {"base_url": f"{slow.url}/slow/v1", "first_token_timeout": 60, "max_connections": 1000},
                },
                "models": {
                    "fast": {"deployments": [{"upstream": "fast", "model": "gpt-4o"}]},
                    "slow": {"deployments": [{"upstream": "slow", "model": "gpt-4o"}]},
                },
            }
        )
    )
    postgres = os.environ.get("POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    results: dict[int, dict[str, Any]] = {1: {}, 2: {}}
    ups: dict[int, Up] = {}
    databases = []
    try:
        # Both topologies up at once (the idle one costs nothing) and measured in alternation,
        # round after round: this VM's speed drifts by tens of percent over minutes, which
        # one run of each, minutes apart, read as a difference between them.
        for processes in (1, 2):
            database = _Database.create(postgres)
            assert database is not None
            databases.append(database)
            ups[processes] = Up(folder, processes, database.url, routes)
        for up in ups.values():
            wrk(up.url, up.key, 16, 3, folder)  # warm
        runs: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for _ in range(args.rounds):
            for connections in (16, 32):
                for processes, up in ups.items():
                    result = measured(up, up.url, connections, args.seconds, folder)
                    runs.setdefault((processes, connections), []).append(result)
        for (processes, connections), measured_runs in runs.items():
            ordered = sorted(measured_runs, key=lambda r: r["rps"])
            median = dict(ordered[len(ordered) // 2])
            median["all"] = [r["rps"] for r in measured_runs]
            results[processes][f"nginx{connections}"] = median
        results[1]["direct16"] = measured(ups[1], ups[1].web[0], 16, args.seconds, folder)
        results[1]["per_request"] = per_request(ups[1], folder)
        for processes, up in ups.items():
            balance, ledger, _ = books(up.database_url, up.account)
            results[processes]["books"] = (balance, ledger)
            results[processes]["held"], results[processes]["kb_per_stream"] = asyncio.run(
                hold_streams(up, IDLE_STREAMS)
            )
    finally:
        for up in ups.values():
            up.down()
        for database in databases:
            database.drop()
        fast.stop()
        slow.close()
    one, two = results[1], results[2]
    lines = [
        f"# Sizing `make up` ({os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; "
        f"fast upstream, {args.seconds} s runs; behind nginx: the median of {args.rounds} alternating runs)",
        "",
        "| setup | connections | requests/s | p50 | p99 | errors | every run, req/s |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]

    def row(name: str, connections: int, r: dict[str, float]) -> str:
        return (
            f"| {name} | {connections} | {r['rps']:.0f} | {r['p50'] * 1000:.1f} ms | {r['p99'] * 1000:.1f} ms | "
            f"{r['errors']} | {', '.join(f'{rps:.0f}' for rps in r.get('all', [r['rps']]))} |"
        )

    lines += [
        row("1 web process, direct (no nginx)", 16, one["direct16"]),
        row("1 web process behind nginx", 16, one["nginx16"]),
        row("1 web process behind nginx", 32, one["nginx32"]),
        row("2 web processes behind nginx", 16, two["nginx16"]),
        row("2 web processes behind nginx", 32, two["nginx32"]),
        "",
        f"- 2 processes / 1 process behind nginx: {two['nginx16']['rps'] / one['nginx16']['rps']:.2f}× at 16 "
        f"connections, {two['nginx32']['rps'] / one['nginx32']['rps']:.2f}× at 32 (target ≥ 1.7×)",
        f"- the books after the runs: balance {one['books'][0]} = ledger {one['books'][1]} (1 process), "
        f"{two['books'][0]} = {two['books'][1]} (2): "
        f"{'exact' if all(r['books'][0] == r['books'][1] for r in (one, two)) else 'MISMATCH'}",
        f"- per request (1 process): {one['per_request']['pg']:.2f} PostgreSQL transactions, "
        f"{one['per_request']['redis']:.1f} Redis commands",
        f"- {IDLE_STREAMS} idle SSE streams: {one['held']} held open by 1 process "
        f"({one['kb_per_stream']:.0f} KB each), {two['held']} by 2 ({two['kb_per_stream']:.0f} KB each)",
    ]
    groups = ["web", "nginx", "postgres", "redis", "wrk", "other"]
    lines += [
        "",
        "CPU per request (ms, user + system, every process on the machine; 'other' = model server, "
        "worker, beat, supervisord, this script):",
        "",
        "| setup | connections | " + " | ".join(groups) + " | total | all cores busy at |",
        "|---|---:|" + "---:|" * (len(groups) + 2),
    ]
    for name, connections, r in (
        ("1 web, direct", 16, one["direct16"]),
        ("1 web + nginx", 16, one["nginx16"]),
        ("1 web + nginx", 32, one["nginx32"]),
        ("2 web + nginx", 16, two["nginx16"]),
        ("2 web + nginx", 32, two["nginx32"]),
    ):
        cpu = r["cpu_ms"]
        total = sum(cpu.get(group, 0.0) for group in groups)
        cells = " | ".join(f"{cpu.get(group, 0.0):.2f}" for group in groups)
        ceiling = (os.cpu_count() or 1) * 1000 / total if total else 0.0
        lines.append(f"| {name} | {connections} | {cells} | {total:.2f} | {ceiling:.0f} req/s |")
    web = one["nginx16"]["cpu_ms"]["web"]
    rest = sum(one["nginx16"]["cpu_ms"].get(group, 0.0) for group in groups) - web
    lines += [
        "",
        f"- one web process is bound by its own core at {1000 / web:.0f} req/s ({web:.2f} ms each); "
        f"two share {os.cpu_count()} cores with everything else ({rest:.2f} ms per request outside the web "
        f"process), so two can reach at most {(os.cpu_count() or 1) * 1000 / (web + rest):.0f} req/s: "
        f"{min(2.0, (os.cpu_count() or 1) * web / (web + rest)):.2f}× on this machine",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
