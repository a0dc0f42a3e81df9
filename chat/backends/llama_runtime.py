"""The one place that talks to llama-cpp-python: loading, prompt building, decoding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .base import ChatMessage, InvalidPrompt, SamplingParams

# Used when a GGUF file carries no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class LlamaRuntime:
    """One loaded model instance. Not thread-safe for decoding: one thread owns it.

    Tokenizing only reads the vocabulary and may run on any thread.
    """

    def __init__(self, llama: object) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llama = llama
        self._lib = llama_cpp
        self._vocab = llama._model.vocab  # type: ignore[attr-defined]
        self._n_vocab = llama.n_vocab()  # type: ignore[attr-defined]
        template = llama.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE  # type: ignore[attr-defined]
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(llama.token_eos()),  # type: ignore[attr-defined]
            bos_token=self._token_text(llama.token_bos()),  # type: ignore[attr-defined]
        )

    @classmethod
    def load(cls, path: Path, *, n_ctx: int, n_threads: int) -> LlamaRuntime:
        from llama_cpp import Llama

        llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=False)
        return cls(llama)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llama.detokenize([token], special=True).decode("utf-8", errors="replace")  # type: ignore[attr-defined]

    def chat_prompt(self, messages: tuple[ChatMessage, ...]) -> list[int]:
        try:
            rendered = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages])  # type: ignore[misc]
        except Exception as exc:  # the model's own template rejected the conversation
            raise InvalidPrompt(f"The model's chat template rejected these messages: {exc}", param="messages") from None
        # The template writes the special tokens itself (BOS included where it wants one).
        return self._llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=False, special=True)  # type: ignore[attr-defined]

    def text_prompt(self, prompt: str | tuple[int, ...]) -> list[int]:
        if isinstance(prompt, tuple):
            bad = next((t for t in prompt if not 0 <= t < self._n_vocab), None)
            if bad is not None:
                raise InvalidPrompt(f"Prompt token id {bad} is outside the model's vocabulary.", param="prompt")
            tokens = list(prompt)
        else:
            tokens = self._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)  # type: ignore[attr-defined]
        return tokens or [self._llama.token_bos()]  # type: ignore[attr-defined]

    def generate(
        self,
        tokens: list[int],
        sampling: SamplingParams,
        *,
        seed: int,
        fresh: bool,
        top_k: int,
        min_p: float,
        repeat_penalty: float,
        json: bool = False,
    ) -> Iterator[int]:
        """Sampled token ids, one at a time; the caller stops iterating to stop decoding.
        `json`: only tokens that keep the text a prefix of one JSON object (llama.cpp's
        bundled JSON grammar)."""
        llama = self._llama
        if fresh:
            llama.reset()  # type: ignore[attr-defined]
        llama.set_seed(seed)  # type: ignore[attr-defined]
        return llama.generate(  # type: ignore[attr-defined, no-any-return]
            tokens,
            top_k=top_k,
            top_p=sampling.top_p,
            min_p=min_p,
            temp=sampling.temperature,
            repeat_penalty=repeat_penalty,
            frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
            grammar=_json_grammar() if json else None,
        )

    def is_end_of_generation(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def piece(self, token: int) -> bytes:
        return self._llama.detokenize([token])  # type: ignore[attr-defined, no-any-return]


def _json_grammar() -> object:
    """A fresh LlamaGrammar for one generation (it holds the parse state)."""
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
