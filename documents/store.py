"""Where passages' vectors and text index live, per database, and how they are searched.

- PostgreSQL: pgvector — an `embedding vector(384)` column on the passage table with an
  HNSW index (cosine), and a generated `tsvector` column with a GIN index beside it: a
  passage's vector and text index go with its row (deleted, truncated) and nothing else.
- SQLite (the embedded default): sqlite-vec — a `vec0` table partitioned by document (a
  search reads only the documents in question), and an FTS5 table (Porter stemmer); a
  trigger removes both rows with their passage.

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

_PG_VECTOR = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    f"ALTER TABLE documents_passage ADD COLUMN IF NOT EXISTS embedding vector({DIMENSIONS})",
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


def vectors_add(rows: Sequence[tuple[int, str, str, np.ndarray]]) -> None:
    """(passage id, document id as hex, passage text, unit vector) for each new passage, in
    the caller's transaction."""
    if not rows:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.executemany(
                "UPDATE documents_passage SET embedding = %s::vector WHERE id = %s",
                [(_vector_text(vector), pk) for pk, _, _, vector in rows],
            )
        else:
            cursor.executemany(
                f"INSERT INTO {VECTOR_TABLE} (rowid, document_id, embedding) VALUES (%s, %s, %s)",
                [(pk, document, vector.astype(np.float32).tobytes()) for pk, document, _, vector in rows],
            )
            cursor.executemany(
                f"INSERT INTO {FTS_TABLE} (rowid, text) VALUES (%s, %s)", [(pk, text) for pk, _, text, _ in rows]
            )


def nearest(vector: np.ndarray, documents: Sequence[str], k: int) -> list[int]:
    """Passage ids of `documents` (hex ids) nearest to `vector`, nearest first."""
    if not documents:
        return []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            return _pg_nearest(cursor, _vector_text(vector), list(documents), k)
        blob = vector.astype(np.float32).tobytes()
        found: list[tuple[float, int]] = []
        for document in documents:  # a partition each: only that document's vectors are read
            cursor.execute(
                f"SELECT rowid, distance FROM {VECTOR_TABLE} WHERE embedding MATCH %s AND k = %s AND document_id = %s",
                [blob, k, document],
            )
            found.extend((distance, pk) for pk, distance in cursor.fetchall())
        return [pk for _, pk in sorted(found)[:k]]


# The two ways PostgreSQL ranks a scope's passages by meaning (bench/documents.py runs these).
PG_SCOPE_SIZE = "SELECT count(*) FROM documents_passage WHERE document_id = ANY(%s::uuid[])"
PG_EXACT = (
    "SELECT id FROM (SELECT id, embedding FROM documents_passage WHERE document_id = ANY(%s::uuid[]) "
    "OFFSET 0) scope ORDER BY embedding <=> %s::vector LIMIT %s"
)
PG_HNSW_SETTINGS = [f"SET LOCAL hnsw.ef_search = {HNSW_EF_SEARCH}", "SET LOCAL hnsw.iterative_scan = relaxed_order"]
PG_HNSW = (
    "SELECT id FROM documents_passage WHERE document_id = ANY(%s::uuid[]) ORDER BY embedding <=> %s::vector LIMIT %s"
)


def _pg_nearest(cursor: Any, vector: str, documents: list[str], k: int) -> list[int]:
    """A few documents' passages (a chat's files, a small project's) are ranked exactly — a
    scan of their rows by the document index, cheaper than the graph and never missing one;
    past EXACT_MAX passages the HNSW index answers, walking on (iterative scan) until `k`
    passages of these documents are found."""
    cursor.execute(PG_SCOPE_SIZE, [documents])
    if cursor.fetchone()[0] <= EXACT_MAX:
        cursor.execute(PG_EXACT, [documents, vector, k])
        return [row[0] for row in cursor.fetchall()]
    with transaction.atomic(using=cursor.db.alias):  # SET LOCAL lasts for this transaction
        for statement in PG_HNSW_SETTINGS:
            cursor.execute(statement)
        cursor.execute(PG_HNSW, [documents, vector, k])
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
