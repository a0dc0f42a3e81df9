"""Retrieval quality on the labelled set, in one run: vector, full-text and fused.

The set is `bench/data/retrieval_set.json` (made by bench/retrieval_set.py and committed
before any tuning): 1,250 passages, 250 paraphrased questions whose answer is one known
passage, 1,000 distractors. Each side ranks every passage for every question:
- vector: the shipped embedding model (all-MiniLM-L6-v2, int8 ONNX; the product's backend
  class), passages and questions embedded as /v1/embeddings embeds them, exact cosine
  similarity (the ceiling an HNSW index approximates);
- full-text: SQLite FTS5 with BM25 (the Porter stemmer), the question as
  documents.retrieval.fts5_query makes it;
- fused: documents.retrieval.fuse (reciprocal rank, k=60) of each side's top 50.
Printed: recall@5 (the answer among the first five) and MRR (mean of 1/rank of the answer;
0 past rank 50). Target: fused recall@5 >= 0.9. The baseline of the same run: the better of
the two sides alone.

    .venv/bin/python bench/retrieval.py [--output bench/results/retrieval.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")
SET = ROOT / "bench" / "data" / "retrieval_set.json"
DEPTH = 50  # how deep each side's ranking goes (and fusion reads)


def recall_and_mrr(rankings: list[list[str]], answers: list[str], at: int = 5) -> tuple[float, float]:
    found = [
        ranking.index(answer) + 1 if answer in ranking else None
        for ranking, answer in zip(rankings, answers, strict=True)
    ]
    recall = sum(1 for rank in found if rank is not None and rank <= at) / len(answers)
    mrr = sum(1 / rank for rank in found if rank is not None) / len(answers)
    return recall, mrr


def vector_rankings(passages: list[dict[str, str]], questions: list[str]) -> tuple[list[list[str]], float]:
    from django.conf import settings

    from chat.backends.embeddings import LocalEmbeddingBackend

    model = LocalEmbeddingBackend("all-MiniLM-L6-v2", n_threads=settings.GHOSTGPT["N_THREADS"])
    model._load()  # in this thread: the bench waits for it anyway
    started = time.perf_counter()
    stored = asyncio.run(model.embed(model.tokenize([p["text"] for p in passages])))
    asked = asyncio.run(model.embed(model.tokenize(questions)))
    seconds = time.perf_counter() - started
    ids = [p["id"] for p in passages]
    order = np.argsort(-(asked @ stored.T), axis=1)[:, :DEPTH]
    return [[ids[i] for i in row] for row in order], seconds


def text_rankings(passages: list[dict[str, str]], questions: list[str]) -> list[list[str]]:
    from documents.retrieval import fts5_query

    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE passage USING fts5(id UNINDEXED, text, tokenize='porter unicode61')")
    db.executemany("INSERT INTO passage (id, text) VALUES (?, ?)", [(p["id"], p["text"]) for p in passages])
    out = []
    for question in questions:
        rows = db.execute(
            "SELECT id FROM passage WHERE passage MATCH ? ORDER BY bm25(passage) LIMIT ?", (fts5_query(question), DEPTH)
        ).fetchall()
        out.append([row[0] for row in rows])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    import django

    django.setup()
    from documents.retrieval import fuse

    data = json.loads(SET.read_text())
    passages, labelled = data["passages"], data["questions"]
    questions = [q["question"] for q in labelled]
    answers = [q["answer"] for q in labelled]
    vector, embed_seconds = vector_rankings(passages, questions)
    text = text_rankings(passages, questions)
    fused = [[key for key, _ in fuse([v, t])][:DEPTH] for v, t in zip(vector, text, strict=True)]

    rows = []
    for name, rankings in (
        ("vector (MiniLM, exact cosine)", vector),
        ("full-text (FTS5, BM25)", text),
        ("fused (RRF, k=60)", fused),
    ):
        recall, mrr = recall_and_mrr(rankings, answers)
        rows.append((name, recall, mrr))
    best_alone = max(rows[0][1], rows[1][1])
    lines = [
        f"Labelled set: {len(passages)} passages, {len(questions)} questions, "
        f"{len(passages) - len(set(answers))} distractors (bench/data/retrieval_set.json).",
        f"Embedding {len(passages) + len(questions)} texts took {embed_seconds:.1f} s on this machine.",
        "",
        "| retrieval | recall@5 | MRR |",
        "|---|---|---|",
        *(f"| {name} | {recall:.3f} | {mrr:.3f} |" for name, recall, mrr in rows),
        "",
        f"fused recall@5 / best side alone: {rows[2][1] / best_alone:.2f}x  (target: fused recall@5 >= 0.9: "
        f"{'met' if rows[2][1] >= 0.9 else 'NOT met'})",
    ]
    report = "\n".join(lines)
    print(report)
    if args.output:
        args.output.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
