"""The one Backend protocol every model source implements.

A backend turns a `GenerationRequest` into an async stream of events. Non-streaming
responses are the same stream collected, so every backend is streaming-first.

Event order for one request:
    Accepted            exactly once, first: the request was admitted (queue slot
                        reserved, prompt measured). Errors raised before it map to an
                        HTTP status; after it the response has started.
    TextDelta*          text for one choice, as produced
    ToolCallDelta*      a function call for one choice: the first delta of a call carries
                        its id and name, later ones more of its JSON arguments
    Finish              exactly once per choice
    Usage               exactly once, last

Closing the async iterator early (client disconnect) must stop the work promptly.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
Capability = Literal["tools", "vision", "local_count", "json_object", "json_schema", "embeddings"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call (OpenAI's `tools[].function`)."""

    name: str
    description: str = ""
    parameters: dict | None = None  # JSON Schema of the arguments object
    # A prompt-cache breakpoint after this tool ("5m" or "1h"; Anthropic's `cache_control`).
    cache_ttl: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the assistant made in an earlier turn; `arguments` is its JSON text."""

    id: str
    name: str
    arguments: str


def arguments_object(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as the object Anthropic and Gemini carry; a model's malformed
    JSON is kept as text under "arguments" (a non-object under "value") rather than lost."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def data_url_parts(url: str) -> tuple[str, str]:
    """`data:image/png;base64,AAA` → ("image/png", "AAA")."""
    header, _, payload = url.partition(",")
    return header[5:].split(";")[0], payload


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str
    # Image URLs (data: or http(s):) from the message's image parts, in order. Backends that
    # cannot see images never receive them: `chat.api.images` turns them into text first.
    images: tuple[str, ...] = ()
    # Where the client put it ("messages[2]"), for error messages about its images.
    origin: str = ""
    # Assistant turns: the function calls it made. Tool turns: which call this answers,
    # and the function's name (Gemini matches results by name).
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    # A prompt-cache breakpoint after this message ("5m" or "1h"): Anthropic's
    # `cache_control`, also accepted on OpenAI content parts as OpenRouter does.
    cache_ttl: str | None = None


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What to generate. Exactly one of `messages` (chat) or `prompts` (legacy) is set."""

    model: str
    sampling: SamplingParams
    messages: tuple[ChatMessage, ...] = ()
    prompts: tuple[str | tuple[int, ...], ...] = ()
    n: int = 1
    user: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    # "auto", "none", "required", or "function" with `forced_tool` naming the function.
    tool_choice: str = "auto"
    forced_tool: str | None = None
    parallel_tool_calls: bool | None = None
    # OpenAI's `response_format` when not plain text: {"type": "json_object"} or
    # {"type": "json_schema", "json_schema": {...}} (only where the backend declares it).
    response_format: dict[str, Any] | None = None
    # The client reads the answer as it is generated. When False (a JSON client), a backend
    # may fetch the answer whole (an OpenAI-compatible upstream: one JSON body, not a stream).
    stream: bool = True
    # OpenAI's `prompt_cache_key`: requests sharing it are routed to the same prompt cache.
    prompt_cache_key: str | None = None
    # The request's trace span (chat.tracing), under which a backend records its calls; None
    # when the request is not traced. Not part of what is asked.
    trace: Any = field(default=None, compare=False, repr=False)

    @property
    def is_chat(self) -> bool:
        return bool(self.messages)

    @property
    def choice_count(self) -> int:
        return self.n * (1 if self.is_chat else len(self.prompts))


@dataclass(frozen=True, slots=True)
class Accepted:
    prompt_tokens: int
    # Identifies the backend configuration, as OpenAI's `system_fingerprint` does.
    system_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    index: int
    text: str
    # Tokens this text came from (text held back for stop strings arrives later, with its
    # tokens), so a consumer that stops early knows exactly how many it delivered.
    tokens: int = 1


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """Part of function call number `call` of choice `index`. The call's first delta has
    `id` and `name`; `arguments` pieces concatenate to its JSON arguments."""

    index: int
    call: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None
    tokens: int = 1


@dataclass(frozen=True, slots=True)
class Finish:
    index: int
    reason: FinishReason


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts in one convention whatever the upstream's: `prompt_tokens` is every input
    token (cache reads and writes included), `completion_tokens` every output token
    (reasoning included); the details are parts of them that a provider bills apart."""

    prompt_tokens: int
    completion_tokens: int
    # Seconds spent waiting for a free model instance and decoding (for Server-Timing).
    queue_seconds: float = 0.0
    model_seconds: float = 0.0
    # True when the backend counted it itself because the model reported none.
    estimated: bool = False
    cached_tokens: int = 0  # of prompt_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of prompt_tokens: written to the provider's prompt cache
    reasoning_tokens: int = 0  # of completion_tokens: spent thinking

    def parts_within(self, prompt: int, completion: int) -> tuple[int, int, int]:
        """(cache writes, cache reads, reasoning) cut to fit those totals — a write is kept
        before a read (it is the dearer); a negative count is none."""
        write = min(max(0, self.cache_write_tokens), prompt)
        return write, min(max(0, self.cached_tokens), prompt - write), min(max(0, self.reasoning_tokens), completion)

    def bounded(self, prompt: int, completion: int, *, estimated: bool = False) -> Usage:
        """These totals, with this usage's parts cut to fit them."""
        write, cached, reasoning = self.parts_within(prompt, completion)
        return Usage(
            prompt,
            completion,
            estimated=estimated,
            cache_write_tokens=write,
            cached_tokens=cached,
            reasoning_tokens=reasoning,
        )

    @property
    def uncached_tokens(self) -> int:
        """The prompt's tokens billed at the plain input rate."""
        write, cached, _ = self.parts_within(self.prompt_tokens, self.completion_tokens)
        return self.prompt_tokens - write - cached

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


Event = Accepted | TextDelta | ToolCallDelta | Finish | Usage


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    owned_by: str
    created: int
    context_length: int
    # What the model's API bills for its largest image (vision models only): the bound
    # GhostGPT reserves per image before it calls the model.
    image_tokens: int = 0
    # A request with function tools to a model without function calling: "refuse" (400) or
    # "drop" (served without them; the response says so). "" = the deployment's default.
    unsupported_tools: str = ""
    # Where it runs: "local" (this deployment's own model processes), "routed" (an upstream
    # the operator configured) or "agents" (dial-in agents). Shown in the chat's model picker.
    source: str = "local"
    # The operator's opt-in to the response cache for every request to this model
    # (chat.api.cache; a routed model's `response_cache: true`).
    response_cache: bool = False


Readiness = Literal["ready", "loading", "failed"]


class Backend(Protocol):
    """A source of completions for one or more public model ids."""

    def models(self) -> list[ModelInfo]: ...

    def capabilities(self) -> frozenset[Capability]:
        """What the model can take beyond text: "tools" (function calling) and "vision"
        (images passed as images; without it they become text first). "local_count": the
        backend counts the prompt on this machine, before any model work, and reports it
        exactly in `Accepted` — billing then reserves the exact cost at that point."""
        ...

    def readiness(self) -> tuple[Readiness, str]:
        """("ready", "") or ("loading"|"failed", a message fit for users)."""
        ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[Event]: ...

    def stats(self) -> dict[str, object]:
        """Counters for /health (queue depth, tokens generated, cancellations)."""
        ...


class BackendError(Exception):
    """A failure a client should see, with the HTTP status and OpenAI error fields."""

    status = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after


class ModelLoading(BackendError):
    status = 503
    error_type = "service_unavailable_error"
    code = "model_loading"


class ModelUnavailable(BackendError):
    status = 503
    error_type = "service_unavailable_error"
    code = "model_unavailable"


class Overloaded(BackendError):
    status = 503
    error_type = "service_unavailable_error"
    code = "server_overloaded"


class InvalidPrompt(BackendError):
    status = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(BackendError):
    status = 400
    error_type = "invalid_request_error"
    code = "context_length_exceeded"
