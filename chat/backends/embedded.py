"""EmbeddedLlamaBackend: a GGUF model decoded in-process by llama-cpp-python.

Concurrency model: the process loads PARALLEL copies of the model, each owned by one
decode thread. Requests wait in one FIFO queue, so they are served in arrival order
and none fails while the queue has room (QUEUE_MAX waiting; beyond that 503 with
Retry-After). Decoding never runs on the event loop: tokens cross to it through
`loop.call_soon_threadsafe`. Cancelling a request (client disconnect) sets a flag the
decode thread checks before every token, so it stops within one token's time.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import logging
import queue
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from chat.metrics import DECODE_SECONDS, DECODED_TOKENS, QUEUE_DEPTH

from .base import (
    Accepted,
    Capability,
    ContextLengthExceeded,
    Event,
    Finish,
    GenerationRequest,
    ModelInfo,
    ModelLoading,
    ModelUnavailable,
    Overloaded,
    Readiness,
    TextDelta,
    Usage,
)
from .llama_runtime import LlamaRuntime
from .stops import StopScanner

logger = logging.getLogger(__name__)

# Sampling knobs OpenAI does not expose; llama-cpp-python's own defaults, so the
# gateway decodes exactly as a direct create_completion() call would.
TOP_K = 40
MIN_P = 0.05
REPEAT_PENALTY = 1.0


@dataclass(eq=False)
class _Job:
    request: GenerationRequest
    prompts: list[list[int]]
    emit: Callable[[Event | BaseException | None], None]
    enqueued_at: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)


class EmbeddedLlamaBackend:
    owned_by = "ghostgpt"

    def __init__(
        self,
        *,
        model_id: str,
        model_path: str,
        n_ctx: int,
        n_threads: int,
        parallel: int = 1,
        queue_max: int = 32,
    ) -> None:
        self.model_id = model_id
        self._model_path = model_path
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._parallel = parallel
        self._queue_max = queue_max
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = False
        self._runtimes: list[LlamaRuntime] = []
        self._state: Readiness = "loading"
        self._error = ""
        self._fingerprint: str | None = None
        self._created = _created(model_path)
        self._counters = {"waiting": 0, "running": 0, "tokens_generated": 0, "cancelled": 0}

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Begin loading in the background; safe to call more than once."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="ghostgpt-model-load", daemon=True).start()

    def _load(self) -> None:
        try:
            path = Path(self._model_path)
            self._fingerprint = _fingerprint(path, self._n_ctx)
            for number in range(self._parallel):
                runtime = LlamaRuntime.load(path, n_ctx=self._n_ctx, n_threads=self._n_threads)
                self._runtimes.append(runtime)
                threading.Thread(
                    target=self._work, args=(runtime,), name=f"ghostgpt-decode-{number}", daemon=True
                ).start()
                self._state = "ready"
            logger.info("model %s ready (%s, %d instance(s))", self.model_id, path.name, self._parallel)
        except Exception:
            logger.exception("loading model %s failed", self.model_id)
            self._state = "failed"
            self._error = f"The model {self.model_id} could not be loaded; the operator must check the server log."

    # --- Backend protocol ----------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=self.model_id, owned_by=self.owned_by, created=self._created, context_length=self._n_ctx)]

    def capabilities(self) -> frozenset[Capability]:
        """Text only: a 135M model cannot call functions reliably (requests with `tools` get
        a clear 400) and cannot see (images become OCR text first). Its tokenizer counts the
        prompt before any decoding: billing reserves the exact cost then. JSON mode decodes
        under llama.cpp's JSON grammar, a fixed one GhostGPT owns (never one from a request:
        a client grammar can cost unbounded CPU per token)."""
        return frozenset({"local_count", "json_object"})

    def readiness(self) -> tuple[Readiness, str]:
        if self._state == "loading":
            return "loading", f"The model {self.model_id} is loading; retry in a few seconds."
        return self._state, self._error

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {"instances": len(self._runtimes), "queue_max": self._queue_max, **self._counters}

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self._ensure_ready()
        prompts = await asyncio.to_thread(self._tokenize, request)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()

        def emit(item: Event | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                job.cancelled.set()

        job = _Job(request=request, prompts=prompts, emit=emit)
        self._admit(job)
        try:
            yield Accepted(prompt_tokens=sum(map(len, prompts)), system_fingerprint=self._fingerprint)
            while (item := await events.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancelled.set()

    # --- admission -------------------------------------------------------------------

    def _ensure_ready(self) -> None:
        state, message = self.readiness()
        if state == "loading":
            raise ModelLoading(message, retry_after=5)
        if state == "failed":
            raise ModelUnavailable(message)

    def _tokenize(self, request: GenerationRequest) -> list[list[int]]:
        """Prompt token ids, one list per prompt; runs in a worker thread."""
        runtime = self._runtimes[0]  # tokenizing only reads the vocabulary
        if request.is_chat:
            prompts = [runtime.chat_prompt(request.messages)]
        else:
            prompts = [runtime.text_prompt(prompt) for prompt in request.prompts]
        for tokens in prompts:
            if len(tokens) >= self._n_ctx:
                raise ContextLengthExceeded(
                    f"This model's maximum context length is {self._n_ctx} tokens. "
                    f"However, your prompt resulted in {len(tokens)} tokens.",
                    param="messages" if request.is_chat else "prompt",
                )
        return prompts

    def _admit(self, job: _Job) -> None:
        with self._lock:
            busy = self._counters["waiting"] + self._counters["running"]
            if busy >= self._parallel + self._queue_max:
                raise Overloaded(
                    f"The model {self.model_id} is busy ({busy} requests in progress); retry shortly.",
                    retry_after=2,
                )
            self._counters["waiting"] += 1
            waiting = self._counters["waiting"]
        QUEUE_DEPTH.labels(self.model_id).set(waiting)
        self._jobs.put(job)

    # --- decoding (decode threads only) -----------------------------------------------

    def _work(self, runtime: LlamaRuntime) -> None:
        while True:
            job = self._jobs.get()
            self._count(waiting=-1, running=+1)
            try:
                if job.cancelled.is_set():  # the client left while waiting in the queue
                    self._count(cancelled=+1)
                else:
                    self._run(runtime, job)
            except Exception:
                logger.exception("generation failed on model %s", self.model_id)
                job.emit(ModelUnavailable(f"The model {self.model_id} failed while generating; retry."))
            finally:
                self._count(running=-1)
                job.emit(None)

    def _run(self, runtime: LlamaRuntime, job: _Job) -> None:
        started = time.monotonic()
        completion_tokens = 0
        n = job.request.n
        for prompt_index, tokens in enumerate(job.prompts):
            for sample in range(n):
                index = prompt_index * n + sample
                decoding = time.monotonic()
                produced, reason = self._decode(runtime, tokens, job, index)
                DECODE_SECONDS.labels(self.model_id).inc(time.monotonic() - decoding)
                DECODED_TOKENS.labels(self.model_id).inc(produced)
                completion_tokens += produced
                if reason is None:
                    self._count(cancelled=+1)
                    return
                job.emit(Finish(index=index, reason=reason))  # type: ignore[arg-type]
        job.emit(
            Usage(
                prompt_tokens=sum(map(len, job.prompts)),
                completion_tokens=completion_tokens,
                queue_seconds=started - job.enqueued_at,
                model_seconds=time.monotonic() - started,
            )
        )

    def _decode(self, runtime: LlamaRuntime, tokens: list[int], job: _Job, index: int) -> tuple[int, str | None]:
        """Generate one choice. Returns (tokens produced, finish reason or None if cancelled)."""
        sampling = job.request.sampling
        budget = min(sampling.max_tokens, self._n_ctx - len(tokens))
        # llama.cpp seeds are uint32, and 0xFFFFFFFF means "random".
        seed = random.getrandbits(31) if sampling.seed is None else (sampling.seed + index) % 0xFFFFFFFF
        # A seeded request re-evaluates its prompt from scratch: reusing a cached prefix
        # changes batch shapes, and with them the last bits of the logits.
        steps = runtime.generate(
            tokens,
            sampling,
            seed=seed,
            fresh=sampling.seed is not None,
            top_k=TOP_K,
            min_p=MIN_P,
            repeat_penalty=REPEAT_PENALTY,
            json=(job.request.response_format or {}).get("type") == "json_object",
        )
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopScanner(sampling.stop)
        produced, unsent, reason = 0, 0, "length"
        for token in steps if budget > 0 else ():
            if job.cancelled.is_set():
                return produced, None
            if runtime.is_end_of_generation(token):
                reason = "stop"
                break
            produced += 1
            unsent += 1
            self._count(tokens_generated=+1)
            text, hit = stops.feed(utf8.decode(runtime.piece(token)))
            if text:
                job.emit(TextDelta(index=index, text=text, tokens=unsent))
                unsent = 0
            if hit:
                return produced, "stop"
            if produced >= budget:
                break
        text, hit = stops.feed(utf8.decode(b"", final=True))
        text += "" if hit else stops.flush()
        if text:
            job.emit(TextDelta(index=index, text=text, tokens=unsent))
        return produced, "stop" if hit else reason

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._counters[name] += delta
            waiting = self._counters["waiting"]
        if "waiting" in deltas:
            QUEUE_DEPTH.labels(self.model_id).set(waiting)


def _created(model_path: str) -> int:
    try:
        return int(Path(model_path).stat().st_mtime)
    except OSError:
        return 0


def _fingerprint(path: Path, n_ctx: int) -> str:
    import llama_cpp

    stat = path.stat()
    digest = hashlib.sha256(f"{path.name}:{stat.st_size}:{n_ctx}:{llama_cpp.__version__}".encode())
    return "fp_" + digest.hexdigest()[:10]
