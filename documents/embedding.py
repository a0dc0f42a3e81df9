"""The models that embed documents' passages and the questions asked of them.

- The shipped all-MiniLM-L6-v2 (free, 384 dimensions), one per process, loaded on first
  use: a Celery worker embeds passages with it, a web process the questions — exactly as
  /v1/embeddings embeds them (the same backend class).
- A routed embeddings model a project chooses (`Project.embedding_model`): its upstream
  embeds, metered as /v1/embeddings is (chat.api.embeddings.embed_billed) — priced by the
  canonical id and reserved before the upstream is called, billed to the key that added
  the file, chose the model, or asked the question.

A document records the model that embedded it and its vectors' length; its questions are
embedded by the same model (documents.context), so a project can change its model while
its files are embedded again, one file at a time, without a wrong comparison in between.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import functools
import os
import threading
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
from django.conf import settings

from chat.api.auth import Principal
from chat.api.embeddings import embed_billed
from chat.api.errors import ApiError
from chat.backends import registry
from chat.backends.base import Backend, BackendError
from chat.backends.embeddings import LocalEmbeddingBackend

MODEL_ID = "all-MiniLM-L6-v2"
ROUTED_BATCH = 256  # passages per upstream call (OpenAI takes 2,048 inputs, 300k tokens)
T = TypeVar("T")


@functools.cache
def encoder() -> LocalEmbeddingBackend:
    model = LocalEmbeddingBackend(MODEL_ID, n_threads=settings.GHOSTGPT["N_THREADS"])
    model._load()  # in the calling thread (a worker's, or a database thread of the web process)
    model._check_ready()
    return model


def embed_texts(texts: list[str]) -> np.ndarray:
    """Unit vectors for `texts` from the shipped model (float32, one row each), in the calling thread."""
    model = encoder()
    return model._run(model.tokenize(texts))


def routed_backend(model: str) -> Backend:
    """The routed embeddings model `model` serves; 400 when it is not one (any more)."""
    backend = registry.routed().get(model)
    if backend is None or "embeddings" not in backend.capabilities() or "local_count" in backend.capabilities():
        raise ApiError(
            400,
            f"'{model}' is not a routed embeddings model on this server.",
            param="embedding_model",
            code="invalid_value",
        )
    return backend


def choose(model: Any, principal: Principal) -> str:
    """What `Project.embedding_model` keeps for a choice: "" for the shipped model (None, "",
    or its id), else the routed model's canonical id — one the chooser's key may use."""
    if model in (None, "", MODEL_ID):
        return ""
    if not isinstance(model, str):
        raise ApiError(400, "'embedding_model' must be a model id or null.", param="embedding_model")
    backend = routed_backend(model)
    canonical = registry.canonical_info(backend).id
    if not (principal.may_use(model) or principal.may_use(canonical)):
        raise ApiError(
            404,
            f"The model '{model}' does not exist or you do not have access to it.",
            param="embedding_model",
            code="model_not_found",
        )
    return canonical


def in_the_background(principal: Principal) -> Principal:
    """`principal` for a job's calls: not refused for the account's (or key's) tokens per
    minute — a document's batch is far past a chat request's size, and its job sends one
    batch at a time — though its tokens still count in the account's minute once billed."""
    key_limits = principal.key_limits
    return dataclasses.replace(
        principal,
        limits=dataclasses.replace(principal.limits, tpm=None),
        key_limits=dataclasses.replace(key_limits, tpm=None) if key_limits is not None else None,
    )


async def embed_routed(model: str, principal: Principal, texts: list[str], *, purpose: str) -> np.ndarray:
    """`texts` embedded by the routed model `model`, billed to `principal` (429, 402, or the
    upstream's failure as an ApiError)."""
    backend = routed_backend(model)
    try:
        return await embed_billed(principal, backend, texts, request_id=f"{purpose}-{uuid.uuid4().hex[:16]}")
    except BackendError as exc:  # every deployment failed
        raise ApiError.from_backend(exc) from None


# Upstream calls from synchronous code (a tool job's thread) go to one event loop per
# process: an upstream's connections and the wallet's loop connection belong to a loop, and
# a loop per call would leave a set of each behind every time.
_loop: tuple[int, asyncio.AbstractEventLoop] | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop[0] != os.getpid():  # a forked worker has no thread running its parent's
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="ghostgpt-documents-loop", daemon=True).start()
            _loop = (os.getpid(), loop)
        return _loop[1]


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """(Sync.) `coroutine`'s result, run on this process's documents loop."""
    return asyncio.run_coroutine_threadsafe(coroutine, _background_loop()).result()


async def _close_sessions() -> None:
    for backend in set(registry.routed().values()):
        for deployment in getattr(backend, "deployments", ()):
            await deployment.upstream.close()


@atexit.register
def _close_loop() -> None:
    """At exit, the documents loop's upstream connections are closed (not left to the
    garbage collector, which logs each as an error)."""
    if _loop is not None and _loop[0] == os.getpid():
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_close_sessions(), _loop[1]).result(timeout=5)
