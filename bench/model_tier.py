"""The model tier of `make up`: which server runs the GGUF for the web processes.

Two candidates serve the same SmolLM2 file with the same threads and context on this machine,
one at a time, driven the same way over HTTP (streamed /v1/chat/completions, the same prompt,
greedy, `max_tokens` fixed, 1 and then 8 concurrent streams):

- llama-cpp-python's own OpenAI server (`python -m llama_cpp.server`, its requests queued,
  not interrupted: `--interrupt_requests False`);
- GhostGPT in the model role (`GHOSTGPT_ROLE=model manage.py serve`: the embedded engine
  behind /v1, no accounts or billing), which `make up` runs.

Aggregate tokens/s (content chunks over the wall time of the whole batch), per-stream
tokens/s and time to first token (p50/p95). The faster at 8 streams is the recipe.

    .venv/bin/python bench/model_tier.py [--tokens 128] [--output bench/results/model-tier.md]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPT = "List the numbers from 1 to 500 separated by commas."
CONCURRENCY = (1, 8)
_REQUESTS = itertools.count(1)


def free_port() -> int:
    from chat.tests.live import free_port as pick

    return pick()


def model_path() -> str:
    """The file GhostGPT serves (GHOSTGPT_MODEL_PATH, else the bundled model in
    GHOSTGPT_BUNDLED_ENCODING), so both candidates decode the same weights."""
    import django

    django.setup()
    from django.conf import settings

    from chat.backends.registry import bundled_model_path

    return str(settings.GHOSTGPT["MODEL_PATH"] or bundled_model_path())


class Candidate:
    def __init__(self, name: str, command: list[str], env: dict[str, str], key: str) -> None:
        self.name, self.key = name, key
        self.port = int(command[command.index("--port") + 1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="model-tier-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        probe = {"model": "ghostgpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        while time.monotonic() < deadline:  # until the model answers (a 503 while it loads)
            try:
                url = self.url + "/v1/chat/completions"
                if httpx.post(url, json=probe, headers=self.headers, timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise RuntimeError(f"{name} did not start: {Path(self.log.name).read_text()[-2000:]}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def one_stream(
    client: httpx.AsyncClient, url: str, tokens: int, prompt: str = PROMPT
) -> tuple[float, int, float]:
    """(seconds to the first content chunk, content chunks, seconds in all)."""
    body = {
        "model": "ghostgpt",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "temperature": 0,
        "seed": 1,
        "stream": True,
    }
    started = time.perf_counter()
    first, chunks = 0.0, 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:]).get("choices") or []
            if choices and choices[0].get("delta", {}).get("content"):
                chunks += 1
                if chunks == 1:
                    first = time.perf_counter() - started
    return first, chunks, time.perf_counter() - started


async def measure(
    candidate: Candidate, concurrency: int, tokens: int, *, distinct: bool = False, prompt: str = PROMPT
) -> dict[str, float]:
    """`distinct`: every stream's prompt is new to the server (its own request number at
    the start), so no prompt cache helps; else all send the same prompt."""
    async with httpx.AsyncClient(headers=candidate.headers, timeout=600) as client:
        await one_stream(client, candidate.url, 16)  # warm: the model is loaded, the prompt path taken
        started = time.perf_counter()
        prompts = [f"Request {next(_REQUESTS)}. {prompt}" if distinct else prompt for _ in range(concurrency)]
        results = await asyncio.gather(*(one_stream(client, candidate.url, tokens, text) for text in prompts))
        wall = time.perf_counter() - started
    firsts = sorted(r[0] for r in results)
    total = sum(r[1] for r in results)
    return {
        "aggregate": total / wall,
        "per_stream": statistics.median(r[1] / r[2] for r in results),
        "ttft_p50": statistics.median(firsts),
        "ttft_p95": firsts[min(len(firsts) - 1, round(0.95 * (len(firsts) - 1)))],
        "tokens": total,
        "shortest": min(r[1] for r in results),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    threads = str(os.cpu_count() or 2)
    data = tempfile.mkdtemp(prefix="model-tier-")
    key = secrets.token_urlsafe(32)
    base_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    candidates = [
        (
            "llama_cpp.server",
            [
                *(sys.executable, "-m", "llama_cpp.server", "--model", model_path(), "--port", str(free_port())),
                *("--n_ctx", "8192", "--n_threads", threads, "--n_threads_batch", threads),
                *("--interrupt_requests", "False", f"--api_key={key}"),
            ],
            base_env,
        ),
        (
            "GhostGPT model role",
            [sys.executable, "manage.py", "serve", "--port", str(free_port())],
            {
                **base_env,
                "GHOSTGPT_ROLE": "model",
                "GHOSTGPT_MODEL_TIER_KEY": key,
                "GHOSTGPT_DATA_DIR": data,
                "GHOSTGPT_SYSTEM_PROMPT": "",
                "GHOSTGPT_N_THREADS": threads,
                "GHOSTGPT_LOG_LEVEL": "WARNING",
            },
        ),
    ]
    rows: dict[str, dict[int, dict[str, float]]] = {}
    for name, command, env in candidates:
        candidate = Candidate(name, command, env, key)
        try:
            rows[name] = {c: asyncio.run(measure(candidate, c, args.tokens)) for c in CONCURRENCY}
        finally:
            candidate.stop()
    lines = [
        f"# Model tier: llama_cpp.server vs GhostGPT's model role ({args.tokens} tokens a stream, "
        f"{threads} threads, {time.strftime('%Y-%m-%d')})",
        "",
        "| server | streams | aggregate tok/s | per-stream tok/s | TTFT p50 | TTFT p95 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, by_concurrency in rows.items():
        for c, r in by_concurrency.items():
            lines.append(
                f"| {name} | {c} | {r['aggregate']:.1f} | {r['per_stream']:.1f} | "
                f"{r['ttft_p50'] * 1000:.0f} ms | {r['ttft_p95'] * 1000:.0f} ms |"
            )
    ours, theirs = rows["GhostGPT model role"], rows["llama_cpp.server"]
    lines.append("")
    for c in CONCURRENCY:
        lines.append(
            f"- {c} stream(s): GhostGPT / llama_cpp.server aggregate = "
            f"{ours[c]['aggregate'] / theirs[c]['aggregate']:.2f}×, "
            f"TTFT p95 {ours[c]['ttft_p95'] * 1000:.0f} vs {theirs[c]['ttft_p95'] * 1000:.0f} ms"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
