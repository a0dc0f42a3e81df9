"""EmbeddedLlamaBackend: a GGUF model decoded in-process by llama-cpp-python, with
continuous batching.

Concurrency model: one llama.cpp context holds up to PARALLEL_SEQUENCES sequences (slots);
one decode thread owns it and steps them together (see _step). A request waiting in the
FIFO queue takes a free slot at the next step (QUEUE_MAX waiting; beyond that 503 with
Retry-After); a slot whose client left (the cancel flag) or whose generation ended is free
at the next step, its cells kept as a prompt cache (chat.backends.sequences). Decoding
never runs on the event loop: tokens cross to it through `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
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
from .llama_runtime import BatchItem, LlamaRuntime
from .sequences import Generation, SequenceCache
from .stops import StopScanner

logger = logging.getLogger(__name__)

# Sampling knobs OpenAI does not expose; llama-cpp-python's own defaults, so the
# gateway decodes exactly as a direct create_completion() call would.
TOP_K = 40
MIN_P = 0.05
REPEAT_PENALTY = 1.0
# Prompt tokens read per step, all slots together: a long prompt costs running streams a
# short pause per step, not one long one.
PREFILL_CHUNK = 128


@dataclass(eq=False)
class _Job:
    request: GenerationRequest
    prompts: list[list[int]]
    emit: Callable[[Event | BaseException | None], None]
    enqueued_at: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)
class _Slot:
    """One sequence of the context: its cells (`cache`) and the job it serves."""

    cache: SequenceCache
    job: _Job | None = None
    choices: list[tuple[int, list[int]]] = field(default_factory=list)  # (choice index, prompt) still to run
    generation: Generation | None = None
    started: float = 0.0
    completion_tokens: int = 0


class EmbeddedLlamaBackend:
    owned_by = "ghostgpt"

    def __init__(
        self,
        *,
        model_id: str,
        model_path: str,
        n_ctx: int,
        n_threads: int,
        sequences: int = 1,
        queue_max: int = 32,
    ) -> None:
        self.model_id = model_id
        self._model_path = model_path
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._sequences = sequences
        self._queue_max = queue_max
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = False
        self._runtime: LlamaRuntime | None = None
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
            self._runtime = LlamaRuntime.load(
                path, n_ctx=self._n_ctx, n_threads=self._n_threads, sequences=self._sequences
            )
            threading.Thread(target=self._work, args=(self._runtime,), name="ghostgpt-decode", daemon=True).start()
            self._state = "ready"
            logger.info("model %s ready (%s, %d sequence(s))", self.model_id, path.name, self._sequences)
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
            return {"sequences": self._sequences, "queue_max": self._queue_max, **self._counters}

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
        runtime = self._runtime  # tokenizing only reads the vocabulary
        assert runtime is not None
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
            if busy >= self._sequences + self._queue_max:
                raise Overloaded(
                    f"The model {self.model_id} is busy ({busy} requests in progress); retry shortly.",
                    retry_after=2,
                )
            self._counters["waiting"] += 1
            waiting = self._counters["waiting"]
        QUEUE_DEPTH.labels(self.model_id).set(waiting)
        self._jobs.put(job)

    # --- decoding (the decode thread only) ---------------------------------------------

    def _work(self, runtime: LlamaRuntime) -> None:
        slots = [_Slot(SequenceCache(sequence)) for sequence in range(runtime.sequences)]
        while True:
            try:
                self._step(runtime, slots)
            except Exception:
                logger.exception("generation failed on model %s", self.model_id)
                for slot in slots:
                    if slot.job is not None:
                        slot.job.emit(ModelUnavailable(f"The model {self.model_id} failed while generating; retry."))
                        self._release(runtime, slot, forget=True)

    def _step(self, runtime: LlamaRuntime, slots: list[_Slot]) -> None:
        """One step: free the slots whose clients left, seat waiting requests in free slots,
        evaluate the next token of every running generation in one batch, then read
        prompts (PREFILL_CHUNK tokens in all, oldest request first), and sample every
        sequence whose logits came back. A prompt piece gets a llama_decode of its own:
        llama.cpp splits a batch that mixes sequences of unequal token counts, and that
        split changed a prompt's logits (a seeded text depended on what else ran)."""
        for slot in slots:
            if slot.job is not None and slot.job.cancelled.is_set():
                self._count(cancelled=+1)
                self._release(runtime, slot)
        self._seat(runtime, slots, wait=all(slot.job is None for slot in slots))
        running = [slot for slot in slots if slot.generation is not None and not slot.cache.reading]
        if running:
            self._decode(runtime, running, [len(slot.cache.pending) for slot in running])
        room = PREFILL_CHUNK
        reading = (slot for slot in slots if slot.generation is not None and slot.cache.reading)
        for slot in sorted(reading, key=lambda s: s.started):
            if room <= 0:
                break
            take = slot.cache.chunk(room)
            room -= take
            self._decode(runtime, [slot], [take])

    def _decode(self, runtime: LlamaRuntime, slots: list[_Slot], counts: list[int]) -> None:
        """Evaluate the first `counts[i]` pending tokens of each slot in one batch; sample
        the slots whose pending tokens are all read."""
        items = [
            BatchItem(cache.sequence, cache.pending[:count], len(cache.cached), logits=count == len(cache.pending))
            for cache, count in zip((slot.cache for slot in slots), counts, strict=True)
        ]
        began = time.monotonic()
        where = runtime.decode(items)
        DECODE_SECONDS.labels(self.model_id).inc(time.monotonic() - began)
        for slot, item, index in zip(slots, items, where, strict=True):
            slot.cache.evaluated(len(item.tokens))
            if index >= 0 and slot.generation is not None:
                slot.cache.reading = False
                self._advance(runtime, slot, slot.generation.sampler.sample(index))

    def _seat(self, runtime: LlamaRuntime, slots: list[_Slot], *, wait: bool) -> None:
        """Give free slots to waiting requests, oldest first; block for one when idle."""
        while any(slot.job is None for slot in slots):
            try:
                job = self._jobs.get(block=wait)
            except queue.Empty:
                return
            wait = False
            self._count(waiting=-1, running=+1)
            if job.cancelled.is_set():  # the client left while waiting in the queue
                self._count(cancelled=+1, running=-1)
                job.emit(None)
                continue
            n = job.request.n
            choices = [(p * n + k, tokens) for p, tokens in enumerate(job.prompts) for k in range(n)]
            free = [slot for slot in slots if slot.job is None]
            slot = max(free, key=lambda s: s.cache.shared_prefix(choices[0][1]))
            slot.job, slot.choices, slot.started, slot.completion_tokens = job, choices, time.monotonic(), 0
            self._next_choice(runtime, slot)

    def _next_choice(self, runtime: LlamaRuntime, slot: _Slot) -> None:
        """Start the slot's next choice, or finish its job when none is left."""
        job = slot.job
        assert job is not None
        while slot.choices:
            index, prompt = slot.choices.pop(0)
            sampling = job.request.sampling
            budget = min(sampling.max_tokens, runtime.n_ctx - len(prompt))
            if budget <= 0:
                job.emit(Finish(index=index, reason="length"))
                continue
            # llama.cpp seeds are uint32, and 0xFFFFFFFF means "random".
            seed = random.getrandbits(31) if sampling.seed is None else (sampling.seed + index) % 0xFFFFFFFF
            slot.cache.begin(runtime, prompt, seeded=sampling.seed is not None)
            slot.generation = Generation(
                index=index,
                budget=budget,
                stops=StopScanner(sampling.stop),
                sampler=runtime.sampler(
                    sampling,
                    seed=seed,
                    top_k=TOP_K,
                    min_p=MIN_P,
                    repeat_penalty=REPEAT_PENALTY,
                    json=(job.request.response_format or {}).get("type") == "json_object",
                ),
            )
            return
        job.emit(
            Usage(
                prompt_tokens=sum(map(len, job.prompts)),
                completion_tokens=slot.completion_tokens,
                queue_seconds=slot.started - job.enqueued_at,
                model_seconds=time.monotonic() - slot.started,
            )
        )
        self._release(runtime, slot)

    def _advance(self, runtime: LlamaRuntime, slot: _Slot, token: int) -> None:
        """A token sampled for the slot's generation: send its text, or end the choice."""
        generation, job = slot.generation, slot.job
        assert generation is not None and job is not None
        reason: str | None = None
        if runtime.is_end_of_generation(token):
            reason = "stop"
        else:
            generation.produced += 1
            generation.unsent += 1
            slot.completion_tokens += 1
            DECODED_TOKENS.labels(self.model_id).inc()
            self._count(tokens_generated=+1)
            text, hit = generation.stops.feed(generation.utf8.decode(runtime.piece(token)))
            if text:
                job.emit(TextDelta(index=generation.index, text=text, tokens=generation.unsent))
                generation.unsent = 0
            if hit:
                reason = "stop"
            elif generation.produced >= generation.budget:
                reason = "length"
            else:
                slot.cache.pending = [token]
        if reason is None:
            return
        text, hit = generation.stops.feed(generation.utf8.decode(b"", final=True))
        text += "" if hit else generation.stops.flush()
        if text:
            job.emit(TextDelta(index=generation.index, text=text, tokens=generation.unsent))
        job.emit(Finish(index=generation.index, reason="stop" if hit else reason))  # type: ignore[arg-type]
        generation.sampler.close()
        slot.generation, slot.cache.pending = None, []
        self._next_choice(runtime, slot)

    def _release(self, runtime: LlamaRuntime, slot: _Slot, *, forget: bool = False) -> None:
        """End the slot's job (the stream ends) and free the slot for the next request.
        Its cells stay as a prompt cache unless `forget` (after a failed batch)."""
        job = slot.job
        if slot.generation is not None:
            slot.generation.sampler.close()
        if forget:
            slot.cache.clear(runtime)
        slot.job, slot.generation, slot.cache.pending, slot.choices = None, None, [], []
        self._count(running=-1)
        if job is not None:
            job.emit(None)

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
