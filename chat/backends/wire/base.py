"""What every wire shares: the upstream errors (which decide failover), the outgoing
request, and a `Translator` base that keeps per-choice state and ends the stream."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chat.backends.base import (
    BackendError,
    Event,
    Finish,
    FinishReason,
    GenerationRequest,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from chat.billing.estimate import CALL_OVERHEAD, prompt_bound, text_bound


class UpstreamFailed(BackendError):
    """An upstream could not answer: another deployment may."""

    status = 502
    error_type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamFailed):
    status = 504
    error_type = "timeout_error"
    code = "upstream_timeout"


class UpstreamBusy(UpstreamFailed):
    status = 503
    error_type = "service_unavailable_error"
    code = "upstream_overloaded"


class UpstreamRejected(BackendError):
    """The upstream refused the request itself (400/404/422), or it cannot express it: no
    other deployment would accept it either, so it goes back to the client."""

    status = 400
    error_type = "invalid_request_error"
    code = "upstream_rejected_request"


@dataclass(frozen=True, slots=True)
class Outgoing:
    path: str  # appended to the upstream's base_url
    body: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)


class Translator:
    """One upstream answer → our events. `feed` gets each SSE event (its `event:` name, or
    "", and its parsed `data:` JSON); `close` runs when the body ends."""

    def __init__(self, request: GenerationRequest, name: str) -> None:
        self.request = request
        self.name = name
        self.finished: set[int] = set()
        self.calls: dict[int, int] = {}  # choice -> function calls so far
        self.usage: Usage | None = None
        self.delivered = 0
        self.complete = False  # the upstream said it was done (not just a cut connection)

    def feed(self, event: str, data: Any) -> Iterable[Event]:
        raise NotImplementedError

    def whole(self, data: Any) -> Iterable[Event]:
        """A whole answer's parsed JSON body (only wires that ask for one, with `stream: false`)."""
        raise self.failed("a whole answer where a stream was asked for")

    def _check(self, index: int) -> None:
        if not 0 <= index < self.request.choice_count:
            raise self.failed(f"choice {index}, which was not asked for")

    def text(self, index: int, text: str) -> Iterable[Event]:
        self._check(index)
        if text:
            tokens = text_bound(text)  # an upper bound: the upstream's usage, if any, replaces it
            self.delivered += tokens
            yield TextDelta(index=index, text=text, tokens=tokens)

    def new_call(self, index: int, call_id: str, name: str, arguments: str = "") -> ToolCallDelta:
        self._check(index)
        number = self.calls.get(index, 0)
        self.calls[index] = number + 1
        tokens = text_bound(call_id) + text_bound(name) + text_bound(arguments) + CALL_OVERHEAD
        self.delivered += tokens
        return ToolCallDelta(index=index, call=number, id=call_id, name=name, arguments=arguments, tokens=tokens)

    def call_arguments(self, index: int, arguments: str, call: int | None = None) -> Iterable[Event]:
        """More arguments for call `call` of the choice (the latest one by default)."""
        count = self.calls.get(index, 0)
        number = count - 1 if call is None else call
        if arguments and 0 <= number < count:
            tokens = text_bound(arguments)
            self.delivered += tokens
            yield ToolCallDelta(index=index, call=number, arguments=arguments, tokens=tokens)

    def finish(self, index: int, reason: FinishReason) -> Iterable[Event]:
        self._check(index)
        if index not in self.finished:
            self.finished.add(index)
            yield Finish(index=index, reason=reason)

    def failed(self, message: str) -> UpstreamFailed:
        return UpstreamFailed(f"The upstream '{self.name}' failed mid-answer: {message}"[:600])

    def close(self) -> Iterable[Event]:
        if not self.complete:
            raise UpstreamFailed(f"The upstream '{self.name}' broke off in the middle of the answer.")
        for index in range(self.request.choice_count):
            yield from self.finish(index, "stop")
        yield self.usage or Usage(estimate_prompt_tokens(self.request), self.delivered, estimated=True)


class Wire(Protocol):
    """One upstream API format."""

    probe_path: str  # a cheap GET for active health checks (never a paid completion)

    def headers(self, api_key: str, options: dict[str, str]) -> dict[str, str]: ...

    def prepare(self, model: str, request: GenerationRequest) -> Outgoing: ...

    def translator(self, request: GenerationRequest, name: str) -> Translator: ...

    def error_message(self, raw: bytes) -> str: ...


def count(value: Any) -> int:
    """A token count from an upstream's usage: a non-negative int, 0 for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return max(0, min(int(value), 2**31 - 1))


def estimate_prompt_tokens(request: GenerationRequest) -> int:
    """For an upstream that reports no usage: the prompt's upper bound (one token per UTF-8
    byte plus the template's allowance; see chat.billing.estimate), which is what is billed."""
    return prompt_bound(request, image_tokens=0)


def error_message(raw: bytes) -> str:
    """The message of an `{"error": {"message": ...}}` body (OpenAI, Anthropic and Gemini
    all nest it so), cut short."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):  # Gemini sometimes wraps it in a list
        error = data[0].get("error")
    message = error.get("message") if isinstance(error, dict) else error
    return str(message)[:500] if message else ""


def single_prompt(request: GenerationRequest, name: str) -> str:
    """A legacy /v1/completions request for a chat-only upstream: one prompt, one choice."""
    if len(request.prompts) != 1 or not isinstance(request.prompts[0], str) or request.n != 1:
        raise UpstreamRejected(
            f"The upstream '{name}' takes chat requests: a completion needs one text prompt and n=1.", param="prompt"
        )
    return request.prompts[0]
