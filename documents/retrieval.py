"""Ranking passages for a question: full-text and vector rankings fused by reciprocal rank.

Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): a passage's score is the sum,
over the rankings that hold it, of 1 / (k + its rank there). It needs no score calibration
between BM25 and cosine similarity, which live on unrelated scales.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from typing import TypeVar

RRF_K = 60  # the constant of the paper, which it found robust
_TERMS = re.compile(r"\w+", re.UNICODE)

Key = TypeVar("Key", bound=Hashable)


def fuse(rankings: Sequence[Sequence[Key]], *, k: int = RRF_K) -> list[tuple[Key, float]]:
    """The union of `rankings` (each best first), best first by reciprocal-rank score; ties
    keep the order in which they were first seen."""
    scores: dict[Key, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def fts5_query(question: str) -> str:
    """A question as an SQLite FTS5 query: any of its words (each quoted, so nothing in the
    question is read as query syntax); BM25 weighs the rare ones. Empty when it has no words."""
    terms = dict.fromkeys(term.lower() for term in _TERMS.findall(question))
    return " OR ".join(f'"{term}"' for term in terms)
