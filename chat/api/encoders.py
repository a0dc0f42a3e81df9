"""Backend events -> OpenAI wire format: SSE chunks, or one JSON body collected from them.

Stream shape (matches the recorded api.openai.com streams in chat/tests/fixtures):
a first chunk per choice with `delta.role`, content deltas, exactly one chunk per choice
with `finish_reason` and an empty delta, with include_usage a last chunk with
`choices: []` and `usage`, then `data: [DONE]`. Only `data:` lines (and `: ping`
comments); every chunk of a response shares one id.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, TypedDict

from chat.backends.base import Accepted, Event, Finish, TextDelta, ToolCallDelta, Usage
from chat.jsonbytes import dumps

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


class UsageDict(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int]
    completion_tokens_details: dict[str, int]


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


def usage_dict(usage: Usage) -> UsageDict:
    """OpenAI's usage object: the prompt's cache reads and writes and the answer's reasoning
    inside the totals, as OpenAI reports them."""
    prompt_details = {"cached_tokens": usage.cached_tokens, "cache_write_tokens": usage.cache_write_tokens}
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


class Encoder:
    """Shared state of one response: id, timestamps, per-choice text and finish reasons."""

    body_object = ""
    chunk_object = ""
    id_prefix = ""
    ping = PING  # the keep-alive while a stream waits

    def __init__(
        self,
        *,
        model: str,
        choice_count: int,
        include_usage: bool = False,
        costs: Callable[[Usage], dict[str, Any]] | None = None,
        legacy_functions: bool = False,
    ) -> None:
        self.id = self.id_prefix + secrets.token_urlsafe(18)
        self.created = int(time.time())
        self.model = model
        self.choice_count = choice_count
        self.include_usage = include_usage
        self.fingerprint: str | None = None
        self.texts: list[list[str]] = [[] for _ in range(choice_count)]
        self.finish: list[str | None] = [None] * choice_count
        # Per choice, the function calls made: {"id", "name", "arguments"} in call order.
        self.calls: list[list[dict[str, str]]] = [[] for _ in range(choice_count)]
        self.legacy_functions = legacy_functions
        self.usage: Usage | None = None
        self.delivered_tokens = 0
        self._costs = costs

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return sse(
            {
                "id": self.id,
                "object": self.chunk_object,
                "created": self.created,
                "model": self.model,
                "system_fingerprint": self.fingerprint,
                "choices": choices,
                **extra,
            }
        )

    def error(self, error: Any) -> bytes:
        """The error event that ends a stream that had already started (an ApiError)."""
        return sse(error.payload())

    def end(self) -> bytes:
        return DONE

    def record(self, event: Event) -> None:
        """Remember an event for the collected (non-stream) body."""
        if isinstance(event, TextDelta):
            self.texts[event.index].append(event.text)
            self.delivered_tokens += event.tokens
        elif isinstance(event, ToolCallDelta):
            calls = self.calls[event.index]
            while len(calls) <= event.call:
                calls.append({"id": "", "name": "", "arguments": ""})
            call = calls[event.call]
            call["id"] = event.id or call["id"]
            call["name"] = event.name or call["name"]
            call["arguments"] += event.arguments
            self.delivered_tokens += event.tokens
        elif isinstance(event, Finish):
            self.finish[event.index] = event.reason
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Accepted):
            self.fingerprint = event.system_fingerprint

    def encode(self, event: Event) -> bytes:
        """SSE bytes for one event (possibly empty)."""
        self.record(event)
        if isinstance(event, TextDelta):
            return self._chunk([self._text_choice(event.index, event.text)])
        if isinstance(event, ToolCallDelta):
            return self._chunk([self._call_choice(event)])
        if isinstance(event, Finish):
            return self._chunk([self._finish_choice(event.index, event.reason)])
        if isinstance(event, Usage):
            return self._chunk([], usage=self.usage_payload(event)) if self.include_usage else b""
        return self._start()

    def _start(self) -> bytes:
        return b""

    def usage_payload(self, usage: Usage) -> dict[str, Any]:
        """OpenAI's usage object plus, when the request is metered, its cost fields."""
        return {**usage_dict(usage), **(self._costs(usage) if self._costs else {})}

    def _text_choice(self, index: int, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def _call_choice(self, event: ToolCallDelta) -> dict[str, Any]:
        raise NotImplementedError  # only chat responses carry function calls

    def _finish_choice(self, index: int, reason: str) -> dict[str, Any]:
        raise NotImplementedError

    def _body_choice(self, index: int, text: str, reason: str) -> dict[str, Any]:
        raise NotImplementedError

    def body(self) -> dict[str, Any]:
        """The non-stream response body, from everything recorded."""
        choices = [self._body_choice(i, "".join(parts), self.finish[i] or "stop") for i, parts in enumerate(self.texts)]
        usage = self.usage_payload(self.usage or Usage(0, 0))
        return {
            "id": self.id,
            "object": self.body_object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": choices,
            "usage": usage,
        }


class ChatEncoder(Encoder):
    body_object = "chat.completion"
    chunk_object = "chat.completion.chunk"
    id_prefix = "chatcmpl-"

    def _start(self) -> bytes:
        role = {"role": "assistant", "content": "", "refusal": None}
        return b"".join(
            self._chunk([{"index": i, "delta": role, "logprobs": None, "finish_reason": None}])
            for i in range(self.choice_count)
        )

    def _text_choice(self, index: int, text: str) -> dict[str, Any]:
        return {"index": index, "delta": {"content": text}, "logprobs": None, "finish_reason": None}

    def _call_choice(self, event: ToolCallDelta) -> dict[str, Any]:
        """OpenAI's streamed tool calls: the first delta of a call has its id, type and name
        (and empty arguments), the rest only argument text; legacy clients get
        `function_call` deltas instead."""
        function: dict[str, str] = {"arguments": event.arguments}
        if event.name:
            function = {"name": event.name, "arguments": event.arguments}
        if self.legacy_functions:
            delta: dict[str, Any] = {"function_call": function}
        else:
            call: dict[str, Any] = {"index": event.call}
            if event.id:
                call.update(id=event.id, type="function")
            delta = {"tool_calls": [{**call, "function": function}]}
        return {"index": event.index, "delta": delta, "logprobs": None, "finish_reason": None}

    def _reason(self, reason: str) -> str:
        return "function_call" if reason == "tool_calls" and self.legacy_functions else reason

    def _finish_choice(self, index: int, reason: str) -> dict[str, Any]:
        return {"index": index, "delta": {}, "logprobs": None, "finish_reason": self._reason(reason)}

    def _body_choice(self, index: int, text: str, reason: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        calls = self.calls[index]
        if calls:
            message["content"] = text or None
            if self.legacy_functions:
                message["function_call"] = {"name": calls[0]["name"], "arguments": calls[0]["arguments"]}
            else:
                message["tool_calls"] = [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for c in calls
                ]
        return {"index": index, "message": message, "logprobs": None, "finish_reason": self._reason(reason)}


class CompletionEncoder(Encoder):
    body_object = chunk_object = "text_completion"
    id_prefix = "cmpl-"

    def _text_choice(self, index: int, text: str) -> dict[str, Any]:
        return {"index": index, "text": text, "logprobs": None, "finish_reason": None}

    def _finish_choice(self, index: int, reason: str) -> dict[str, Any]:
        return {"index": index, "text": "", "logprobs": None, "finish_reason": reason}

    def _body_choice(self, index: int, text: str, reason: str) -> dict[str, Any]:
        return {"index": index, "text": text, "logprobs": None, "finish_reason": reason}
