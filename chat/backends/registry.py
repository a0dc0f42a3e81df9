"""Public model id -> Backend. Built once per process from settings."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import bundled
from .base import Backend, ModelInfo
from .embedded import EmbeddedLlamaBackend
from .embeddings import LocalEmbeddingBackend
from .routing import load_routes
from .upstream import Prober

_lock = threading.Lock()
_routes: dict[str, Backend] | None = None
_routed: dict[str, Backend] | None = None


def bundled_model_path() -> str:
    """The SmolLM2-135M-Instruct file to serve (chat/backends/bundled.py): the Q8_0 encoding
    `make install` derived from the package's Q4_1 file, or (GHOSTGPT_BUNDLED_ENCODING=q4_1)
    that file as shipped."""
    encoding = settings.GHOSTGPT["BUNDLED_ENCODING"]
    return str(bundled.bundled_model_path(encoding, [bundled.install_dir(), settings.DATA_DIR / "models"]))


def _build() -> dict[str, Backend]:
    config = settings.GHOSTGPT
    table: dict[str, Backend] = {}
    holds_models = settings.ROLE != "web"  # a web-tier process routes its models to the model tier
    if holds_models:
        embedded = EmbeddedLlamaBackend(
            model_id=config["MODEL_ID"],
            model_path=config["MODEL_PATH"] or bundled_model_path(),
            n_ctx=config["N_CTX"],
            n_threads=config["N_THREADS"],
            sequences=config["PARALLEL_SEQUENCES"],
            queue_max=config["QUEUE_MAX"],
        )
        embedded.start()
        table[config["MODEL_ID"]] = embedded
    if config["EMBEDDING_MODEL"] and holds_models:
        embedder = LocalEmbeddingBackend(config["EMBEDDING_MODEL"], n_threads=config["N_THREADS"])
        embedder.start()
        table[config["EMBEDDING_MODEL"]] = embedder
    if config["AGENT_MODEL"]:
        from chat.agents.pool import AgentPool

        info = ModelInfo(
            id=config["AGENT_MODEL"],
            owned_by="agents",
            created=int(time.time()),
            context_length=config["N_CTX"],
            source="agents",
        )
        timeout = config["AGENT_FIRST_TOKEN_TIMEOUT"]
        table[config["AGENT_MODEL"]] = AgentPool(info, first_token_timeout=timeout, read_timeout=max(timeout, 120.0))
    if config["ROUTES_FILE"]:
        routed_models = load_routes(config["ROUTES_FILE"])
        for routed in routed_models:
            for name in (routed.info.id, *routed.aliases):
                if name in table:
                    raise ImproperlyConfigured(f"model id {name!r} is routed twice")
                table[name] = routed
        Prober(routed_models, config["PROBE_SECONDS"]).start()
    return table


def routes() -> dict[str, Backend]:
    global _routes
    if _routes is None:
        with _lock:
            if _routes is None:
                _routes = _build()
    return _routes


def routed() -> dict[str, Backend]:
    """The routed models alone, for a process that only calls upstreams on someone's behalf
    (a Celery worker embedding a document's passages): the process's full table when it has
    one (a web process: the same backends, their connections and health), else one built
    from the routes file only — no embedded model is loaded for it."""
    global _routed
    if _routes is not None:
        return _routes
    if _routed is None:
        with _lock:
            if _routed is None:
                file = settings.GHOSTGPT["ROUTES_FILE"]
                models = load_routes(file) if file else []
                _routed = {name: model for model in models for name in (model.info.id, *model.aliases)}
    return _routed


def warm_up() -> None:
    """Create the backends and start loading their models in the background."""
    routes()


def resolve(model_id: str) -> Backend | None:
    return routes().get(model_id)


def can_chat(backend: Backend) -> bool:
    """Whether the model answers chat (an embedding model does not: it only embeds)."""
    return "embeddings" not in backend.capabilities()


def chat_models() -> list[tuple[ModelInfo, Backend]]:
    """The public ids that can chat, for the chat's model picker."""
    return [(info, backend) for info, backend in all_models() if can_chat(backend)]


def canonical_info(backend: Backend) -> ModelInfo:
    """The model a backend serves under its own id (what aliases resolve to, and what is
    priced and billed)."""
    return backend.models()[0]


def all_models() -> list[tuple[ModelInfo, Backend]]:
    """Every public id (aliases included, under their own id) with its backend."""
    listed = []
    for name, backend in routes().items():
        for info in backend.models():
            listed.append((info if info.id == name else replace(info, id=name), backend))
            break
    return listed
