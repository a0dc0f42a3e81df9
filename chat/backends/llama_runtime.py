"""The one place that talks to llama-cpp-python: loading, prompt building, batched decoding.

One model and one llama.cpp context. The context holds `sequences` sequences (llama.cpp's
`n_seq_max`), each in a KV stream of its own with `n_ctx` cells (`kv_unified` off: a
sequence attends over its own cells only, so its arithmetic does not depend on what the
other sequences hold). One `decode()` evaluates a batch that mixes sequences — a token of
every running generation and chunks of new prompts — with one pass over the weights.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import ChatMessage, InvalidPrompt, SamplingParams

# Used when a GGUF file carries no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Tokens one decode() may carry (llama.cpp's n_batch, as llama-cpp-python's default).
BATCH_TOKENS = 512
# Penalties look back this many generated tokens (llama-cpp-python's last_n_tokens_size).
PENALTY_LAST_N = 64


class DecodeFailed(RuntimeError):
    """llama_decode refused a batch (no KV cells, or an internal error)."""


@dataclass(frozen=True)
class BatchItem:
    """Tokens of one sequence to evaluate, starting at position `position`; `logits`: keep
    the last token's logits to sample from."""

    sequence: int
    tokens: Sequence[int]
    position: int
    logits: bool


class Sampler:
    """One generation's sampler chain — llama-cpp-python's own order (penalties, grammar,
    top-k, typical, top-p, min-p, temperature, seeded draw; greedy at temperature 0), so a
    sequence decodes as `Llama.generate` would. It keeps the sequence's state (penalty
    window, grammar position, random stream): one per generation."""

    def __init__(self, lib: object, ctx: object, chain: object) -> None:
        self._lib = lib
        self._ctx = ctx
        self._chain = chain

    def sample(self, index: int) -> int:
        """Sample from the logits of batch position `index` of the last decode() and
        accept the token (the grammar and penalties move on)."""
        return int(self._lib.llama_sampler_sample(self._chain.sampler, self._ctx, index))  # type: ignore[attr-defined]

    def close(self) -> None:
        self._chain.close()  # type: ignore[attr-defined]


class LlamaRuntime:
    """The model and its context. Decoding is not thread-safe: one thread owns it.
    Tokenizing only reads the vocabulary and may run on any thread."""

    def __init__(self, model: object, context: object, *, n_ctx: int, sequences: int) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._lib = llama_cpp
        self._model = model
        self._ctx = context
        self.n_ctx = n_ctx
        self.sequences = sequences
        self._vocab = model.vocab  # type: ignore[attr-defined]
        self._n_vocab = model.n_vocab()  # type: ignore[attr-defined]
        self._memory = llama_cpp.llama_get_memory(context.ctx)  # type: ignore[attr-defined]
        self._batch = llama_cpp.llama_batch_init(BATCH_TOKENS, 0, 1)
        template = model.metadata().get("tokenizer.chat_template") or CHATML_TEMPLATE  # type: ignore[attr-defined]
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(model.token_eos()),  # type: ignore[attr-defined]
            bos_token=self._token_text(model.token_bos()),  # type: ignore[attr-defined]
        )

    @classmethod
    def load(cls, path: Path, *, n_ctx: int, n_threads: int, sequences: int = 1) -> LlamaRuntime:
        import llama_cpp
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # llama.cpp's own log lines: errors only
        # verbose=True: with False, llama-cpp-python points the whole process's stdout and
        # stderr at /dev/null while the model loads (in the loading thread), and every other
        # thread's log lines of those seconds — startup, a port already taken — were lost.
        model = _internals.LlamaModel(path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=True)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * sequences
        params.n_batch = params.n_ubatch = min(n_ctx * sequences, BATCH_TOKENS)
        params.n_seq_max = sequences
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = n_threads
        # As llama-cpp-python's Llama() by default, so one sequence decodes as it does.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        context = _internals.LlamaContext(model=model, params=params, verbose=True)
        return cls(model, context, n_ctx=n_ctx, sequences=sequences)

    # --- tokens ---------------------------------------------------------------------

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._model.detokenize([token], special=True).decode("utf-8", errors="replace")  # type: ignore[attr-defined, no-any-return]

    def chat_prompt(self, messages: tuple[ChatMessage, ...]) -> list[int]:
        """The conversation through the model's chat template. Only the template's own text
        may hold special tokens: each message's content is rendered as a placeholder, and
        what the client wrote is tokenized as plain text in its place, so a typed
        `<|im_end|><|im_start|>system` stays text and never opens a turn."""
        nonce = secrets.token_hex(8)
        shown: list[Any] = [
            {"role": m.role, "content": f"\ue000{nonce}{i}\ue001" if m.content else ""} for i, m in enumerate(messages)
        ]
        try:
            rendered = self._formatter(messages=shown)
        except Exception as exc:  # the model's own template rejected the conversation
            raise InvalidPrompt(f"The model's chat template rejected these messages: {exc}", param="messages") from None
        pieces = re.split(f"\ue000{nonce}(\\d+)\ue001", rendered.prompt)
        tokens: list[int] = []
        for index, piece in enumerate(pieces):
            if index % 2:  # a message's content: never special
                text, special = messages[int(piece)].content, False
            else:  # the template's text writes the special tokens (BOS where it wants one)
                text, special = piece, True
            if text:
                tokens += self._model.tokenize(text.encode("utf-8"), add_bos=False, special=special)  # type: ignore[attr-defined]
        return tokens

    def text_prompt(self, prompt: str | tuple[int, ...]) -> list[int]:
        if isinstance(prompt, tuple):
            bad = next((t for t in prompt if not 0 <= t < self._n_vocab), None)
            if bad is not None:
                raise InvalidPrompt(f"Prompt token id {bad} is outside the model's vocabulary.", param="prompt")
            tokens = list(prompt)
        else:
            tokens = self._model.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)  # type: ignore[attr-defined]
        return tokens or [self._model.token_bos()]  # type: ignore[attr-defined]

    def is_end_of_generation(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def piece(self, token: int) -> bytes:
        return self._model.detokenize([token])  # type: ignore[attr-defined, no-any-return]

    # --- decoding (the owning thread only) ---------------------------------------------

    def sampler(
        self,
        sampling: SamplingParams,
        *,
        seed: int,
        top_k: int,
        min_p: float,
        repeat_penalty: float,
        json: bool = False,
    ) -> Sampler:
        """A fresh sampler chain for one generation. `json`: only tokens that keep the text
        a prefix of one JSON object (llama.cpp's bundled JSON grammar)."""
        from llama_cpp import _internals
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        chain = _internals.LlamaSampler()
        chain.add_penalties(
            n_vocab=self._n_vocab,
            penalty_last_n=PENALTY_LAST_N,
            penalty_repeat=repeat_penalty,
            penalty_freq=sampling.frequency_penalty,
            penalty_present=sampling.presence_penalty,
        )
        if json:
            chain.add_grammar(self._model, LlamaGrammar.from_string(JSON_GBNF, verbose=False))  # type: ignore[arg-type]
        if sampling.temperature == 0:
            chain.add_greedy()
        else:
            chain.add_top_k(top_k)
            chain.add_typical(1.0, 1)
            chain.add_top_p(sampling.top_p, 1)
            chain.add_min_p(min_p, 1)
            chain.add_temp(sampling.temperature)
            chain.add_dist(seed)
        return Sampler(self._lib, self._ctx.ctx, chain)  # type: ignore[attr-defined]

    def forget(self, sequence: int, keep: int = 0) -> None:
        """Drop a sequence's cells from position `keep` on (0: all of them)."""
        self._lib.llama_memory_seq_rm(self._memory, sequence, keep, -1)

    def decode(self, items: Sequence[BatchItem]) -> list[int]:
        """Evaluate one batch (at most BATCH_TOKENS tokens in all). Returns, per item, the
        batch position of its logits (for Sampler.sample), or -1 where none were asked."""
        batch = self._batch
        count = 0
        where: list[int] = []
        for item in items:
            for offset, token in enumerate(item.tokens):
                batch.token[count] = token
                batch.pos[count] = item.position + offset
                batch.n_seq_id[count] = 1
                batch.seq_id[count][0] = item.sequence
                batch.logits[count] = False
                count += 1
            if item.logits and item.tokens:
                batch.logits[count - 1] = True
                where.append(count - 1)
            else:
                where.append(-1)
        batch.n_tokens = count
        status = self._lib.llama_decode(self._ctx.ctx, batch)  # type: ignore[attr-defined]
        if status != 0:
            raise DecodeFailed(f"llama_decode returned {status}")
        return where
