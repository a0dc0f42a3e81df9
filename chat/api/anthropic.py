"""The Anthropic Messages API on our side: `POST /v1/messages`, for the official `anthropic`
SDK (and anything speaking its wire format) against any model GhostGPT routes.

The request is translated into the OpenAI shape and goes through the same path as
/v1/chat/completions (auth with `x-api-key` or Bearer, limits, billing, the backend);
only the encoder differs: `message_start`, `content_block_start`, `ping`,
`content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`, and
`{"type": "error", "error": {...}}` bodies. Any `anthropic-version` is accepted.
"""

from __future__ import annotations

import json
from typing import Any

from chat.backends.base import Accepted, Event, TextDelta, Usage

from .encoders import Encoder
from .errors import bad_request, reshaped_errors
from .params import ParsedRequest, parse_chat

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


# --- request ----------------------------------------------------------------------------------


def parse_messages(body: dict[str, Any], policy: dict[str, Any]) -> ParsedRequest:
    """An Anthropic Messages request → the OpenAI request it means, parsed by the same policy."""
    for name, kind in (("model", str), ("max_tokens", int), ("messages", list)):
        value = body.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise bad_request(f"{name}: Field required ({kind.__name__}).", param=name)
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _text_of(system, "system")})
    for i, message in enumerate(body["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise bad_request(f"messages.{i}.role: must be 'user' or 'assistant'.", param=f"messages.{i}.role")
        messages.append({"role": message["role"], "content": _content(message.get("content"), f"messages.{i}")})
    translated: dict[str, Any] = {
        "model": body["model"],
        "messages": messages,
        "max_tokens": body["max_tokens"],
        "stream": bool(body.get("stream")),
    }
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("stop", "stop_sequences")):
        if body.get(theirs) is not None:
            translated[ours] = body[theirs]
    user = (body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"), dict) else None
    if user:
        translated["user"] = str(user)
    if body.get("tools"):
        translated["tools"] = body["tools"]  # refused by the policy with a clear 400 (text-only models)
    return parse_chat(translated, policy)


def _text_of(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in value):
        return "\n".join(str(b.get("text", "")) for b in value)
    raise bad_request(f"{where}: expected a string or a list of text blocks.", param=where)


def _content(content: Any, where: str) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"{where}.content: expected a string or a list of content blocks.", param=f"{where}.content")
    parts = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, f"{where}.content.{j}")}})
        else:
            raise bad_request(
                f"{where}.content.{j}: content blocks of type {kind!r} are not supported by this model.",
                param=f"{where}.content.{j}",
            )
    return parts


def _image_url(block: dict[str, Any], where: str) -> str:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        return f"data:{source.get('media_type', 'image/png')};base64,{source['data']}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return source["url"]
    raise bad_request(f"{where}.source: expected a base64 or url image source.", param=f"{where}.source")


# --- response -------------------------------------------------------------------------------


class MessagesEncoder(Encoder):
    """Backend events → Anthropic's message object or its SSE events (one text block)."""

    id_prefix = "msg_"
    ping = _event("ping", {"type": "ping"})
    _prompt_tokens = 0

    def _start(self) -> bytes:
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._prompt_tokens, "output_tokens": 0},
        }
        return (
            _event("message_start", {"type": "message_start", "message": message})
            + _event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            + self.ping
        )

    def encode(self, event: Event) -> bytes:
        self.record(event)
        if isinstance(event, Accepted):
            return self._start()
        if isinstance(event, TextDelta) and event.index == 0:
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": event.text}}
            return _event("content_block_delta", delta)
        if isinstance(event, Usage):
            reason = STOP_REASONS.get(self.finish[0] or "stop", "end_turn")
            return (
                _event("content_block_stop", {"type": "content_block_stop", "index": 0})
                + _event(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": reason, "stop_sequence": None},
                        "usage": self._usage(event),
                    },
                )
                + _event("message_stop", {"type": "message_stop"})
            )
        return b""  # Finish: its reason goes out with message_delta

    def _usage(self, usage: Usage) -> dict[str, Any]:
        return {
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            **(self._costs(usage) if self._costs else {}),
        }

    def error(self, error: Any) -> bytes:
        return _event("error", error_body(error.status, error.message))

    def end(self) -> bytes:
        return b""

    def body(self) -> dict[str, Any]:
        usage = self.usage or Usage(self._prompt_tokens, 0)
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [{"type": "text", "text": "".join(self.texts[0])}],
            "stop_reason": STOP_REASONS.get(self.finish[0] or "stop", "end_turn"),
            "stop_sequence": None,
            "usage": self._usage(usage),
        }

    def record(self, event: Event) -> None:
        if isinstance(event, Accepted):
            self._prompt_tokens = event.prompt_tokens
        super().record(event)


anthropic_errors = reshaped_errors(error_body)  # the view's errors as Anthropic error bodies
