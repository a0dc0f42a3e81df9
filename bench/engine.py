"""Decode speed of the embedded model through the gateway vs llama-cpp-python directly,
then a concurrency sweep (continuous batching).

Part 1, one stream: same model file, prompt, context size, thread count and sampling
(greedy) on both sides; runs alternate so both see the same machine state, and the server
is idle while the direct runs decode. Decode tokens/s = (tokens - 1) / (last token time -
first token time), so prompt evaluation and HTTP setup do not count; time to first token
is reported apart.

Part 2, the sweep: 1, 2, 4, 8 and 16 concurrent streamed requests of --max-tokens tokens
each, through the API of GhostGPT (GHOSTGPT_PARALLEL_SEQUENCES=16) and of llama-cpp-python's
own OpenAI server (`python -m llama_cpp.server`, same GGUF, threads and context), one
server at a time: aggregate tokens/s (content chunks over the wall time of the whole
batch), per-stream tokens/s, time to first token p50/p95. Every stream's prompt is new to
the server (its request number comes first), so prompt caches do not flatter the time to
first token, and asks for an essay, which runs to --max-tokens (greedy): every stream does
the same work, and the table says the shortest stream's length. The single-stream ceiling
is part 1's direct llama-cpp-python run.

Part 3, the batching ceiling: the same prompts decoded by GhostGPT's llama.cpp runtime
driven directly (no HTTP, no event loop, no client), 1 and 8 sequences in one context —
what batching itself gains on this CPU, which bounds what any server can show.

    .venv/bin/python bench/engine.py [--runs 5] [--max-tokens 256] [--sweep 1,2,4,8,16] \\
        [--output bench/results/engine.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from measure import report  # bench/ is the script's own directory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")

MESSAGES = [{"role": "user", "content": "Count from 1 to 300, separated by commas."}]
# The sweep's prompt: greedy answers to it run past 256 tokens with both bundled encodings.
ESSAY = "Write a long essay about the history of the sea."


@dataclass
class Run:
    tokens: int
    ttft: float
    decode_seconds: float

    @property
    def tokens_per_second(self) -> float:
        return (self.tokens - 1) / self.decode_seconds if self.decode_seconds > 0 else 0.0


def gateway_run(base_url: str, key: str, max_tokens: int) -> Run:
    body = {
        "model": "ghostgpt",
        "messages": MESSAGES,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    with httpx.stream(
        "POST", base_url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=300
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
    return Run(tokens=tokens, ttft=first - started, decode_seconds=last - first)


def direct_run(llama: object, max_tokens: int) -> Run:
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    stream = llama.create_chat_completion(  # type: ignore[attr-defined]
        messages=MESSAGES, max_tokens=max_tokens, temperature=0, stream=True, seed=1
    )
    for chunk in stream:
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content") is not None:
            tokens += 1
            last = time.perf_counter()
            first = first or last
    return Run(tokens=tokens, ttft=first - started, decode_seconds=last - first)


def summarize(name: str, runs: list[Run]) -> tuple[str, float]:
    rate = statistics.median(r.tokens_per_second for r in runs)
    ttft = statistics.median(r.ttft for r in runs) * 1000
    tokens = statistics.median(r.tokens for r in runs)
    return f"| {name} | {len(runs)} | {tokens:.0f} | {rate:.1f} | {ttft:.1f} |", rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--sweep", default="1,2,4,8,16", help="concurrent streams to measure (empty: none)")
    parser.add_argument("--output", type=Path, help="also write the table (markdown) to this file")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from llama_cpp import Llama

    from chat.backends.registry import bundled_model_path
    from chat.tests.live import LiveServer

    config = settings.GHOSTGPT
    model_path = config["MODEL_PATH"] or bundled_model_path()
    server = LiveServer(env={"GHOSTGPT_SYSTEM_PROMPT": "", "DATABASE_URL": ""})
    try:
        llama = Llama(
            model_path=model_path,
            n_ctx=config["N_CTX"],
            n_threads=config["N_THREADS"],
            n_threads_batch=config["N_THREADS"],
            verbose=False,
        )
        gateway_run(server.base_url, server.api_key, 32)  # warm both paths
        direct_run(llama, 32)
        gateway: list[Run] = []
        direct: list[Run] = []
        for _ in range(args.runs):
            gateway.append(gateway_run(server.base_url, server.api_key, args.max_tokens))
            direct.append(direct_run(llama, args.max_tokens))
    finally:
        server.stop()

    direct_row, direct_rate = summarize("llama-cpp-python create_chat_completion(stream=True), in-process", direct)
    gateway_row, gateway_rate = summarize("GhostGPT POST /v1/chat/completions stream, over HTTP (uvicorn)", gateway)
    ratio = gateway_rate / direct_rate if direct_rate else 0.0
    table = "\n".join(
        [
            f"Model: {Path(model_path).name}, n_ctx={config['N_CTX']}, threads={config['N_THREADS']}, "
            f"greedy, max_tokens={args.max_tokens}, medians of {args.runs} alternating runs, {os.cpu_count()} CPUs",
            "",
            "| path | runs | tokens | decode tokens/s | time to first token (ms) |",
            "|---|---|---|---|---|",
            direct_row,
            gateway_row,
            "",
            f"Ratio gateway / direct decode speed: {ratio:.3f}x (target >= 0.9x)",
        ]
    )
    if args.sweep:
        sweep = [int(c) for c in args.sweep.split(",")]
        table += "\n\n" + concurrency_sweep(sweep, args.max_tokens, config["N_THREADS"], direct_rate)
        table += "\n\n" + batching_ceiling(model_path, config["N_THREADS"], args.max_tokens)
    return report(table, args.output)


def batching_ceiling(model_path: str, threads: int, tokens: int, counts: tuple[int, ...] = (1, 8)) -> str:
    """Part 3: GhostGPT's runtime driven directly: `count` distinct essay prompts, each read
    by a decode of its own (as the engine does), then one decode a step over every sequence
    until each has `tokens` tokens (greedy; an end token ends a sequence early)."""
    from chat.backends.base import ChatMessage, SamplingParams
    from chat.backends.embedded import MIN_P, REPEAT_PENALTY, TOP_K
    from chat.backends.llama_runtime import BatchItem, LlamaRuntime

    lines = [
        "Batching ceiling: GhostGPT's llama.cpp runtime driven directly (no HTTP, no event loop, no client), "
        f"the sweep's prompts, {tokens} tokens a sequence, greedy, {threads} threads",
        "",
        "| sequences | tokens | prompt seconds | decode tok/s | × 1 sequence | tok/s with prompts | × 1 sequence |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base: tuple[float, float] | None = None
    for count in counts:
        runtime = LlamaRuntime.load(Path(model_path), n_ctx=1024, n_threads=threads, sequences=count)
        greedy = SamplingParams(max_tokens=tokens, temperature=0)
        samplers = [
            runtime.sampler(greedy, seed=1, top_k=TOP_K, min_p=MIN_P, repeat_penalty=REPEAT_PENALTY)
            for _ in range(count)
        ]
        prompts = [
            runtime.chat_prompt((ChatMessage(role="user", content=f"Sequence {s}. {ESSAY}"),)) for s in range(count)
        ]
        started = time.perf_counter()
        following = [samplers[s].sample(runtime.decode([BatchItem(s, p, 0, True)])[0]) for s, p in enumerate(prompts)]
        read = time.perf_counter()
        positions, produced = [len(p) for p in prompts], [0] * count
        running = [s for s in range(count) if not runtime.is_end_of_generation(following[s])]
        while running:
            where = runtime.decode([BatchItem(s, [following[s]], positions[s], True) for s in running])
            for s, index in zip(running, where, strict=True):
                produced[s] += 1
                positions[s] += 1
                following[s] = samplers[s].sample(index)
            running = [s for s in running if produced[s] < tokens and not runtime.is_end_of_generation(following[s])]
        ended = time.perf_counter()
        for sampler in samplers:
            sampler.close()
        decode, overall = sum(produced) / (ended - read), sum(produced) / (ended - started)
        base = base or (decode, overall)
        lines.append(
            f"| {count} | {sum(produced)} | {read - started:.2f} | {decode:.1f} | {decode / base[0]:.2f}× | "
            f"{overall:.1f} | {overall / base[1]:.2f}× |"
        )
        del runtime
    return "\n".join(lines)


def concurrency_sweep(sweep: list[int], tokens: int, threads: int, ceiling: float) -> str:
    """Part 2: both servers, one at a time, at each concurrency of `sweep`."""
    import asyncio
    import secrets
    import tempfile

    from bench.model_tier import Candidate, free_port, measure, model_path

    n_ctx, key = "4096", secrets.token_urlsafe(32)
    base_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    candidates = [
        (
            "GhostGPT /v1 (continuous batching, 16 sequences)",
            [sys.executable, "manage.py", "serve", "--port", str(free_port())],
            {
                **base_env,
                "GHOSTGPT_ROLE": "model",
                "GHOSTGPT_MODEL_TIER_KEY": key,
                "GHOSTGPT_DATA_DIR": tempfile.mkdtemp(prefix="bench-engine-"),
                "GHOSTGPT_SYSTEM_PROMPT": "",
                "GHOSTGPT_N_THREADS": str(threads),
                "GHOSTGPT_N_CTX": n_ctx,
                "GHOSTGPT_PARALLEL_SEQUENCES": str(max(sweep)),
                "GHOSTGPT_LOG_LEVEL": "WARNING",
            },
        ),
        (
            "llama_cpp.server",
            [
                *(sys.executable, "-m", "llama_cpp.server", "--model", model_path(), "--port", str(free_port())),
                *("--n_ctx", n_ctx, "--n_threads", str(threads), "--n_threads_batch", str(threads)),
                *("--interrupt_requests", "False", f"--api_key={key}"),
            ],
            base_env,
        ),
    ]
    rows: dict[str, dict[int, dict[str, float]]] = {}
    for name, command, env in candidates:
        candidate = Candidate(name, command, env, key)
        try:
            rows[name] = {c: asyncio.run(measure(candidate, c, tokens, distinct=True, prompt=ESSAY)) for c in sweep}
        finally:
            candidate.stop()
    ours = rows[candidates[0][0]]
    lines = [
        f"Concurrency sweep: {tokens} tokens a stream (an essay each), greedy, seeded, every prompt new to the "
        f"server (no prompt cache helps; ~45 tokens), n_ctx={n_ctx} a sequence, {threads} threads; "
        f"single-stream ceiling (llama-cpp-python direct, part 1): {ceiling:.1f} tok/s",
        "",
        "| server | streams | aggregate tok/s | × its 1 stream | per-stream tok/s | TTFT p50 | TTFT p95 "
        "| shortest stream |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_concurrency in rows.items():
        single = by_concurrency[sweep[0]]["aggregate"]
        for c, r in by_concurrency.items():
            lines.append(
                f"| {name} | {c} | {r['aggregate']:.1f} | {r['aggregate'] / single:.2f}× | {r['per_stream']:.1f} | "
                f"{r['ttft_p50'] * 1000:.0f} ms | {r['ttft_p95'] * 1000:.0f} ms | {r['shortest']:.0f} |"
            )
    if 8 in ours and 1 in ours:
        lines += [
            "",
            f"Targets: aggregate at 8 streams / 1 stream = {ours[8]['aggregate'] / ours[1]['aggregate']:.2f}× "
            f"(target >= 2.5×); TTFT p95 at 8 streams = {ours[8]['ttft_p95'] * 1000:.0f} ms (target < 1000 ms); "
            f"single stream through the API / direct = {ours[1]['aggregate'] / ceiling:.2f}× of the ceiling's "
            "decode rate (target >= 0.9×; the API figure includes prompt and HTTP time)",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
