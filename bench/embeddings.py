"""/v1/embeddings throughput vs the embedding model called directly, in the same run.

Both sides embed the same batches of 32 sentences (about 12 words each) with the same
model, threads and pooling: the API side with POST /v1/embeddings (float encoding, one
request at a time, a key on the unlimited tier, the server as `make run` runs it); the direct
side with the backend's own tokenize + onnxruntime call in this process. The sides
alternate; medians of --runs. Target: API >= 0.8x direct. The API is measured with float
vectors (JSON numbers) and with base64, which openai-python and openai-node ask for.

    .venv/bin/python bench/embeddings.py [--runs 5] [--batches 10] [--output bench/results/embeddings.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
from measure import report  # bench/ is the script's own directory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")
WORDS = ["ghost", "ship", "harbour", "night", "lantern", "sailor", "fog", "mirage", "compass", "storm"]


def sentences(count: int, offset: int) -> list[str]:
    return [" ".join(WORDS[(i + j + offset) % len(WORDS)] for j in range(12)) + f" {i + offset}." for i in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    from chat.backends.embeddings import LocalEmbeddingBackend
    from chat.tests.live import LiveServer

    model = "all-MiniLM-L6-v2"
    threads = settings.GHOSTGPT["N_THREADS"]
    direct = LocalEmbeddingBackend(model, n_threads=threads)
    direct.start()
    server = LiveServer(env={"DATABASE_URL": ""})
    batches = [sentences(32, 32 * b) for b in range(args.batches)]
    inputs = 32 * args.batches
    try:
        client = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=120
        )

        def through_api(encoding: str) -> float:
            started = time.perf_counter()
            for batch in batches:
                body = {"model": model, "input": batch, "encoding_format": encoding}
                response = client.post("/v1/embeddings", json=body)
                response.raise_for_status()
            return time.perf_counter() - started

        def called_directly() -> float:
            started = time.perf_counter()
            for batch in batches:
                direct._run(direct.tokenize(batch))
            return time.perf_counter() - started

        through_api("float"), through_api("base64"), called_directly()  # warm all
        api, api64, lib = [], [], []
        for _ in range(args.runs):
            api.append(through_api("float"))
            api64.append(through_api("base64"))
            lib.append(called_directly())
    finally:
        server.stop()
    api_rate, lib_rate = inputs / statistics.median(api), inputs / statistics.median(lib)
    base64_rate = inputs / statistics.median(api64)
    lines = [
        f"Embeddings, all-MiniLM-L6-v2 int8 ONNX, {threads} threads: {args.batches} requests of 32 sentences per run, "
        f"medians of {args.runs} runs",
        "",
        "| side | inputs/s | ratio |",
        "|---|---:|---:|",
        f"| POST /v1/embeddings, encoding_format float | {api_rate:.0f} | {api_rate / lib_rate:.2f}× |",
        f"| POST /v1/embeddings, base64 (the SDKs' default) | {base64_rate:.0f} | {base64_rate / lib_rate:.2f}× |",
        f"| model called directly (baseline) | {lib_rate:.0f} | 1.00× |",
    ]
    return report("\n".join(lines), args.output)


if __name__ == "__main__":
    raise SystemExit(main())
