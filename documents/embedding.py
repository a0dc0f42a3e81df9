"""The shipped embedding model (all-MiniLM-L6-v2) for documents, one per process, loaded on
first use: a Celery worker embeds passages with it, a web process the questions. Passages
and questions are embedded exactly as /v1/embeddings embeds them (the same backend class)."""

from __future__ import annotations

import functools

import numpy as np
from django.conf import settings

from chat.backends.embeddings import LocalEmbeddingBackend

MODEL_ID = "all-MiniLM-L6-v2"


@functools.cache
def encoder() -> LocalEmbeddingBackend:
    model = LocalEmbeddingBackend(MODEL_ID, n_threads=settings.GHOSTGPT["N_THREADS"])
    model._load()  # in the calling thread (a worker's, or a database thread of the web process)
    model._check_ready()
    return model


def embed_texts(texts: list[str]) -> np.ndarray:
    """Unit vectors for `texts` (float32, one row each), in the calling thread."""
    model = encoder()
    return model._run(model.tokenize(texts))
