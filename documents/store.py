"""Where passages' vectors and text index live, per database, and how they are searched.

- PostgreSQL: pgvector — an `embedding vector(384)` column on the passage table with an
  HNSW index (cosine), and a generated `tsvector` column with a GIN index beside it: a
  passage's vector and text index go with its row (deleted, truncated) and nothing else.
  Vectors of a routed embeddings model (any other length) go in an `embedding_routed
  vector` column, with an HNSW index per length (partial, on the column cast to that
  length; halfvec past pgvector's 2,000 dimensions), made when the first such vector comes.
- SQLite (the embedded default): sqlite-vec — a `vec0` table per vector length partitioned
  by document (a search reads only the documents in question), and an FTS5 table (Porter
  stemmer); triggers remove a passage's rows with it.

A search compares a question with the passages of documents embedded by the same model
(documents.context groups them): vectors of two models never meet in one ranking.

`schema_ensure` makes whatever is missing (after every migrate: installing pgvector later
and migrating again is all it takes). A PostgreSQL without pgvector gets no vector table:
`readiness` says so, and documents are refused with that reason — never searched slowly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from chat.backends.embeddings import DIMENSIONS

from .retrieval import fts5_query

VECTOR_TABLE = "documents_passage_vector"
FTS_TABLE = "documents_passage_fts"
HNSW_EF_SEARCH = 100  # candidates the HNSW walk keeps (pgvector's default 40 trades recall)
EXACT_MAX = 20_000  # passages in scope ranked exactly rather than through the HNSW index

HNSW_VECTOR_MAX = 2000  # pgvector's HNSW indexes `vector` up to this length, `halfvec` up to 4,000
_PG_VECTOR = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    f"ALTER TABLE documents_passage ADD COLUMN IF NOT EXISTS embedding vector({DIMENSIONS})",
    "ALTER TABLE documents_passage ADD COLUMN IF NOT EXISTS embedding_routed vector",
    "CREATE INDEX IF NOT EXISTS documents_passage_embedding ON documents_passage "
    "USING hnsw (embedding vector_cosine_ops)",
]
_PG_TEXT = [
    "ALTER TABLE documents_passage ADD COLUMN IF NOT EXISTS search tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX IF NOT EXISTS documents_passage_search ON documents_passage USING gin (search)",
]
_SQLITE = [
    f"""CREATE VIRTUAL TABLE IF NOT EXISTS {VECTOR_TABLE} USING vec0(
        document_id text partition key, embedding float[{DIMENSIONS}] distance_metric=cosine)""",
    f"""CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(
        text, content='', contentless_delete=1, tokenize='porter unicode61')""",
    f"""CREATE TRIGGER IF NOT EXISTS documents_passage_gone AFTER DELETE ON documents_passage BEGIN
        DELETE FROM {VECTOR_TABLE} WHERE rowid = old.id;
        DELETE FROM {FTS_TABLE} WHERE rowid = old.id;
    END""",
]


class Unavailable(Exception):
    """Documents cannot be stored or searched on this database (the reason is for people)."""


def pgvector_available(db: Any = connection) -> bool:
    with db.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        return cursor.fetchone() is not None


def schema_ensure(using: str = DEFAULT_DB_ALIAS) -> None:
    """Create the vector and text indexes where they are missing (idempotent; after every
    migrate)."""
    db = connections[using]
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            for statement in _PG_TEXT:
                cursor.execute(statement)
            if pgvector_available(db):
                for statement in _PG_VECTOR:
                    cursor.execute(statement)
        elif db.vendor == "sqlite":
            for statement in _SQLITE:
                cursor.execute(statement)


def readiness() -> tuple[bool, str]:
    """(True, "") when documents can be stored here; else (False, why, and what to do)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_name = 'documents_passage' "
                "AND column_name = 'embedding'"
            )
            if cursor.fetchone() is None:
                return False, (
                    "Documents need the pgvector extension, which this PostgreSQL server lacks: install it "
                    "(docs/documents.md) and run `manage.py migrate` again."
                )
        return True, ""
    if connection.vendor == "sqlite":
        return True, ""
    return False, f"Documents are not supported on {connection.vendor}."


def check_ready() -> None:
    ready, reason = readiness()
    if not ready:
        raise Unavailable(reason)


def _vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


def _length(dimensions: int) -> int:
    """A vector length, checked before it names a table or a type in SQL."""
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= 4096:
        raise ValueError(f"not a vector length documents keep: {dimensions!r}")
    return dimensions


def _sqlite_table(dimensions: int) -> str:
    return VECTOR_TABLE if dimensions == DIMENSIONS else f"{VECTOR_TABLE}_{_length(dimensions)}"


def _sqlite_vectors_ensure(cursor: Any, dimensions: int) -> str:
    """The vec0 table for vectors of this length (made with its trigger the first time)."""
    table = _sqlite_table(dimensions)
    if dimensions != DIMENSIONS:
        cursor.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0("
            f"document_id text partition key, embedding float[{dimensions}] distance_metric=cosine)"
        )
        cursor.execute(
            f"CREATE TRIGGER IF NOT EXISTS documents_passage_gone_{dimensions} AFTER DELETE ON documents_passage "
            f"BEGIN DELETE FROM {table} WHERE rowid = old.id; END"
        )
    return table


def _pg_cast(dimensions: int) -> str:
    """How a routed vector of this length is indexed and compared on PostgreSQL."""
    kind = "vector" if _length(dimensions) <= HNSW_VECTOR_MAX else "halfvec"
    return f"{kind}({dimensions})"


def _pg_routed_index_ensure(cursor: Any, dimensions: int) -> None:
    """The HNSW index for routed vectors of this length, made by the first transaction that
    stores one (others wait on an advisory lock rather than each taking the table's lock)."""
    name = f"documents_passage_embedding_{_length(dimensions)}"
    cursor.execute("SELECT to_regclass(%s)", [name])
    if cursor.fetchone()[0] is not None:
        return
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])
    cast = _pg_cast(dimensions)
    operators = cast.split("(")[0] + "_cosine_ops"
    cursor.execute(
        f"CREATE INDEX IF NOT EXISTS {name} ON documents_passage USING hnsw ((embedding_routed::{cast}) {operators}) "
        f"WHERE vector_dims(embedding_routed) = {dimensions}"
    )


def vectors_ready(dimensions: int) -> None:
    """Make where vectors of this length go, if it is missing — before the transaction that
    stores them (PostgreSQL cannot build an index on a table with rows written in the same
    transaction whose checks are pending)."""
    if dimensions == DIMENSIONS:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _pg_routed_index_ensure(cursor, dimensions)
        else:
            _sqlite_vectors_ensure(cursor, dimensions)


def vectors_add(rows: Sequence[tuple[int, str, str, np.ndarray]], *, dimensions: int = DIMENSIONS) -> None:
    """(passage id, document id as hex, passage text, vector) for each new passage, in the
    caller's transaction: its vector (of `dimensions`) and its text index."""
    if not rows:
        return
    vectors_set([(pk, document, vector) for pk, document, _, vector in rows], dimensions=dimensions)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {FTS_TABLE} (rowid, text) VALUES (%s, %s)", [(pk, text) for pk, _, text, _ in rows]
            )


def vectors_set(rows: Sequence[tuple[int, str, np.ndarray]], *, dimensions: int) -> None:
    """(passage id, document key, vector): the passages' vectors, in the caller's transaction
    (after `vectors_ready(dimensions)`)."""
    if not rows:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            column = "embedding" if dimensions == DIMENSIONS else "embedding_routed"
            cursor.executemany(
                f"UPDATE documents_passage SET {column} = %s::vector WHERE id = %s",
                [(_vector_text(vector), pk) for pk, _, vector in rows],
            )
        else:
            cursor.executemany(
                f"INSERT INTO {_sqlite_table(dimensions)} (rowid, document_id, embedding) VALUES (%s, %s, %s)",
                [(pk, document, vector.astype(np.float32).tobytes()) for pk, document, vector in rows],
            )


def vectors_drop(passages: Sequence[int], *, dimensions: int) -> None:
    """The passages' vectors of this length go (their text index stays): before a document's
    passages get another model's, in the same transaction."""
    if not passages:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            column = "embedding" if dimensions == DIMENSIONS else "embedding_routed"
            cursor.execute(f"UPDATE documents_passage SET {column} = NULL WHERE id = ANY(%s)", [list(passages)])
        else:
            cursor.executemany(f"DELETE FROM {_sqlite_table(dimensions)} WHERE rowid = %s", [(pk,) for pk in passages])


def nearest(vector: np.ndarray, documents: Sequence[str], k: int, *, dimensions: int = DIMENSIONS) -> list[int]:
    """Passage ids of `documents` (keys; all embedded by the model that made `vector`)
    nearest to `vector`, nearest first."""
    if not documents:
        return []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            return _pg_nearest(cursor, _vector_text(vector), list(documents), k, dimensions)
        blob = vector.astype(np.float32).tobytes()
        table = _sqlite_table(dimensions)  # made when the documents' vectors were stored
        found: list[tuple[float, int]] = []
        for document in documents:  # a partition each: only that document's vectors are read
            cursor.execute(
                f"SELECT rowid, distance FROM {table} WHERE embedding MATCH %s AND k = %s AND document_id = %s",
                [blob, k, document],
            )
            found.extend((distance, pk) for pk, distance in cursor.fetchall())
        return [pk for _, pk in sorted(found)[:k]]


# The two ways PostgreSQL ranks a scope's passages by meaning (bench/documents.py runs these).
PG_SCOPE_SIZE = "SELECT count(*) FROM documents_passage WHERE document_id = ANY(%s::uuid[])"
PG_EXACT = (
    "SELECT id FROM (SELECT id, embedding FROM documents_passage WHERE document_id = ANY(%s::uuid[]) "
    "AND embedding IS NOT NULL OFFSET 0) scope ORDER BY embedding <=> %s::vector LIMIT %s"
)
PG_HNSW_SETTINGS = [f"SET LOCAL hnsw.ef_search = {HNSW_EF_SEARCH}", "SET LOCAL hnsw.iterative_scan = relaxed_order"]
PG_HNSW = (
    "SELECT id FROM documents_passage WHERE document_id = ANY(%s::uuid[]) AND embedding IS NOT NULL "
    "ORDER BY embedding <=> %s::vector LIMIT %s"
)


def _pg_routed_queries(dimensions: int) -> tuple[str, str]:
    """PG_EXACT and PG_HNSW for routed vectors of this length (the HNSW one written as its
    partial index is, so the planner can use it)."""
    cast = _pg_cast(dimensions)
    exact = (
        "SELECT id FROM (SELECT id, embedding_routed FROM documents_passage WHERE document_id = ANY(%s::uuid[]) "
        "AND embedding_routed IS NOT NULL OFFSET 0) scope ORDER BY embedding_routed <=> %s::vector LIMIT %s"
    )
    hnsw = (
        f"SELECT id FROM documents_passage WHERE document_id = ANY(%s::uuid[]) AND vector_dims(embedding_routed) = "
        f"{dimensions} ORDER BY embedding_routed::{cast} <=> %s::{cast} LIMIT %s"
    )
    return exact, hnsw


def _pg_nearest(cursor: Any, vector: str, documents: list[str], k: int, dimensions: int = DIMENSIONS) -> list[int]:
    """A few documents' passages (a chat's files, a small project's) are ranked exactly — a
    scan of their rows by the document index, cheaper than the graph and never missing one;
    past EXACT_MAX passages the HNSW index answers, walking on (iterative scan) until `k`
    passages of these documents are found."""
    exact, hnsw = (PG_EXACT, PG_HNSW) if dimensions == DIMENSIONS else _pg_routed_queries(dimensions)
    cursor.execute(PG_SCOPE_SIZE, [documents])
    if cursor.fetchone()[0] <= EXACT_MAX:
        cursor.execute(exact, [documents, vector, k])
        return [row[0] for row in cursor.fetchall()]
    with transaction.atomic(using=cursor.db.alias):  # SET LOCAL lasts for this transaction
        for statement in PG_HNSW_SETTINGS:
            cursor.execute(statement)
        cursor.execute(hnsw, [documents, vector, k])
        return [row[0] for row in cursor.fetchall()]


_WORD = re.compile(r"\w+", re.UNICODE)


def matching(question: str, documents: Sequence[str], k: int) -> list[int]:
    """Passage ids of `documents` that share words with `question`, best first (BM25 on
    SQLite, ts_rank_cd on PostgreSQL); any word may match."""
    if not documents:
        return []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            words = _WORD.findall(question.lower())[:64]
            if not words:
                return []
            # Each word a lexeme of its own, OR-ed: nothing in a question is query syntax.
            cursor.execute(
                "SELECT id FROM documents_passage, "
                "(SELECT to_tsquery('english', string_agg(quote_literal(w), ' | ')) AS q FROM unnest(%s::text[]) w) s "
                "WHERE document_id = ANY(%s::uuid[]) AND search @@ s.q ORDER BY ts_rank_cd(search, s.q) DESC LIMIT %s",
                [words, list(documents), k],
            )
            return [row[0] for row in cursor.fetchall()]
        query = fts5_query(question)
        if not query:
            return []
        marks = ",".join(["%s"] * len(documents))
        cursor.execute(
            f"SELECT f.rowid FROM {FTS_TABLE} f JOIN documents_passage p ON p.id = f.rowid "
            f"WHERE {FTS_TABLE} MATCH %s AND p.document_id IN ({marks}) ORDER BY bm25({FTS_TABLE}) LIMIT %s",
            [query, *documents, k],
        )
        return [row[0] for row in cursor.fetchall()]


def document_key(document_id: Any) -> str:
    """How a document id is stored in the vector table (UUID hex on SQLite, as Django stores it)."""
    return document_id.hex if connection.vendor == "sqlite" else str(document_id)
