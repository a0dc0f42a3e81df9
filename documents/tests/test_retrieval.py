"""Reciprocal rank fusion and the full-text query a question becomes."""

from __future__ import annotations

import sqlite3

from documents.retrieval import fts5_query, fuse


def test_fusion_prefers_what_both_rankings_hold() -> None:
    fused = fuse([["a", "b", "c"], ["c", "d", "a"]])
    keys = [key for key, _ in fused]
    assert keys[:2] == ["a", "c"]  # in both rankings, ahead of any passage in one
    assert set(keys) == {"a", "b", "c", "d"}
    assert fused[0][1] == 1 / 61 + 1 / 63


def test_fusion_of_one_ranking_keeps_its_order() -> None:
    assert [key for key, _ in fuse([["x", "y", "z"]])] == ["x", "y", "z"]
    assert fuse([]) == []


def test_a_question_with_query_syntax_is_only_words() -> None:
    query = fts5_query('What is "NEAR(a b)" OR x* AND -y: Karsk\'s lighthouse?')
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize='porter unicode61')")
    db.execute("INSERT INTO t VALUES ('The lighthouse at Karsk Point')")
    assert db.execute("SELECT count(*) FROM t WHERE t MATCH ?", (query,)).fetchone() == (1,)
    assert fts5_query("?!  ") == ""
    assert fts5_query("Fog fog FOG") == '"fog"'
