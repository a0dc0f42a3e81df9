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

from chat.backends.base import Accepted, Event, TextDelta, ToolCallDelta, Usage, arguments_object
from chat.jsonbytes import dumps

from .encoders import Encoder
from .errors import bad_request, reshaped_errors
from .fields import string
from .params import ParsedRequest, function_tool, parse_chat

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
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
    return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"


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
        messages.append({"role": "system", "content": _text_of(system, "system"), **_cache_control(system)})
    for i, message in enumerate(body["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise bad_request(f"messages.{i}.role: must be 'user' or 'assistant'.", param=f"messages.{i}.role")
        messages.extend(_message(message, f"messages.{i}"))
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
    translated.update(_tools(body))
    return parse_chat(translated, policy)


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    """Anthropic `tools` / `tool_choice` → OpenAI's (validated there)."""
    tools = body.get("tools")
    if not tools:
        return {}
    if not isinstance(tools, list):
        raise bad_request("tools: expected a list of tools.", param="tools")
    translated: dict[str, Any] = {"tools": [function_tool(tool, "input_schema") for tool in tools]}
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = string(choice.get("type"))
        mapped: Any = {"auto": "auto", "any": "required", "none": "none"}.get(kind or "")
        if kind == "tool":
            mapped = {"type": "function", "function": {"name": choice.get("name")}}
        if mapped is None:
            raise bad_request("tool_choice.type: expected auto, any, tool or none.", param="tool_choice")
        translated["tool_choice"] = mapped
        if choice.get("disable_parallel_tool_use"):
            translated["parallel_tool_calls"] = False
    return translated


def _message(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """One Anthropic message → OpenAI messages: `tool_use` blocks become the assistant's
    `tool_calls`, `tool_result` blocks become `tool` messages (before the user's text)."""
    content = message.get("content")
    if message["role"] == "assistant" and isinstance(content, list):
        calls = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_use"]
        rest = [b for b in content if not (isinstance(b, dict) and b.get("type") in ("tool_use", "thinking"))]
        translated: dict[str, Any] = {"role": "assistant", "content": _content(rest, where) if rest else ""}
        if calls:
            translated["tool_calls"] = [
                {
                    "id": str(call.get("id") or ""),
                    "type": "function",
                    "function": {"name": call.get("name"), "arguments": json.dumps(call.get("input") or {})},
                }
                for call in calls
            ]
        return [translated]
    if isinstance(content, list):
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        rest = [b for b in content if not (isinstance(b, dict) and b.get("type") == "tool_result")]
        out = [
            {
                "role": "tool",
                "tool_call_id": str(result.get("tool_use_id") or ""),
                "content": ("Error: " if result.get("is_error") else "")
                + _result_text(result.get("content"), f"{where}.content"),
                **_cache_control([result]),
            }
            for result in results
        ]
        if rest or not results:
            out.append({"role": message["role"], "content": _content(rest, where)})
        return out
    return [{"role": message["role"], "content": _content(content, where)}]


def _result_text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text")
    raise bad_request(f"{where}: a tool_result's content is a string or text blocks.", param=where)


def _cache_control(blocks: Any) -> dict[str, Any]:
    """The last `cache_control` among the blocks, as a message's (checked by parse_chat)."""
    if not isinstance(blocks, list):
        return {}
    marked = [b["cache_control"] for b in blocks if isinstance(b, dict) and b.get("cache_control") is not None]
    return {"cache_control": marked[-1]} if marked else {}


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
        marked = _cache_control([block])
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", "")), **marked})
        elif kind == "image":
            url = _image_url(block, f"{where}.content.{j}")
            parts.append({"type": "image_url", "image_url": {"url": url}, **marked})  # type: ignore[dict-item]
        else:
            raise bad_request(
                f"{where}.content.{j}: content blocks of type {kind!r} are not supported by this model.",
                param=f"{where}.content.{j}",
            )
    return parts


def _image_url(block: dict[str, Any], where: str) -> str:
    source: dict[str, Any] = block["source"] if isinstance(block.get("source"), dict) else {}
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        return f"data:{source.get('media_type', 'image/png')};base64,{source['data']}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return source["url"]
    raise bad_request(f"{where}.source: expected a base64 or url image source.", param=f"{where}.source")


# --- response -------------------------------------------------------------------------------


class MessagesEncoder(Encoder):
    """Backend events → Anthropic's message object or its SSE events: a text block for the
    text, then one `tool_use` block per function call (arguments as `input_json_delta`)."""

    id_prefix = "msg_"
    ping = _event("ping", {"type": "ping"})
    _prompt_tokens = 0
    _block = -1  # index of the open content block
    _block_call: int | None = None  # the call the open block belongs to (None: text)

    def _start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._prompt_tokens, "output_tokens": 0},
        }
        return _event("message_start", {"type": "message_start", "message": message})

    def _open(self, block: dict[str, Any], call: int | None) -> bytes:
        out = self._close()
        self._block += 1
        self._block_call = call
        start = {"type": "content_block_start", "index": self._block, "content_block": block}
        # Anthropic's own order: message_start, the first content_block_start, ping.
        return out + _event("content_block_start", start) + (self.ping if self._block == 0 else b"")

    def _close(self) -> bytes:
        if self._block < 0 or self._block_call == -1:
            return b""
        self._block_call = -1  # closed
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._block})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": self._block, "delta": delta})

    def encode(self, event: Event) -> bytes:
        self.record(event)
        if isinstance(event, Accepted):
            return self._start()
        if isinstance(event, TextDelta) and event.index == 0:
            out = (
                b"" if self._block >= 0 and self._block_call is None else self._open({"type": "text", "text": ""}, None)
            )
            return out + self._delta({"type": "text_delta", "text": event.text})
        if isinstance(event, ToolCallDelta) and event.index == 0:
            out = b""
            if event.call != self._block_call:
                call = self.calls[0][event.call]
                out = self._open({"type": "tool_use", "id": call["id"], "name": call["name"], "input": {}}, event.call)
            if event.arguments:
                out += self._delta({"type": "input_json_delta", "partial_json": event.arguments})
            return out
        if isinstance(event, Usage):
            out = self._open({"type": "text", "text": ""}, None) if self._block < 0 else b""
            return (
                out
                + self._close()
                + _event(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": self._stop_reason(), "stop_sequence": None},
                        "usage": self._usage(event),
                    },
                )
                + _event("message_stop", {"type": "message_stop"})
            )
        return b""  # Finish: its reason goes out with message_delta

    def _stop_reason(self) -> str:
        return STOP_REASONS.get(self.finish[0] or "stop", "end_turn")

    def _usage(self, usage: Usage) -> dict[str, Any]:
        """Anthropic's shape: cache reads and writes outside `input_tokens`."""
        return {
            "input_tokens": usage.uncached_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cached_tokens,
            "output_tokens": usage.completion_tokens,
            **(self._costs(usage) if self._costs else {}),
        }

    def error(self, error: Any) -> bytes:
        return _event("error", error_body(error.status, error.message))

    def end(self) -> bytes:
        return b""

    def body(self) -> dict[str, Any]:
        usage = self.usage or Usage(self._prompt_tokens, 0)
        text = "".join(self.texts[0])
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text or not self.calls[0] else []
        content += [
            {"type": "tool_use", "id": c["id"], "name": c["name"], "input": arguments_object(c["arguments"])}
            for c in self.calls[0]
        ]
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self._stop_reason(),
            "stop_sequence": None,
            "usage": self._usage(usage),
        }

    def record(self, event: Event) -> None:
        if isinstance(event, Accepted):
            self._prompt_tokens = event.prompt_tokens
        super().record(event)


anthropic_errors = reshaped_errors(error_body)  # the view's errors as Anthropic error bodies
