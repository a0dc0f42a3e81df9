"""Anthropic's Messages API as an upstream: `POST {base_url}/messages` with `x-api-key` and
`anthropic-version`, streamed (`message_start` … `message_stop`). System messages become
`system`, tool calls `tool_use` blocks, tool results `tool_result` blocks in a user turn,
images base64 blocks. Anthropic has no `n`, penalties or seed: n > 1 is refused (400),
the rest are not sent."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chat.backends.base import ChatMessage, Event, GenerationRequest, Usage, arguments_object, data_url_parts

from .base import Outgoing, Translator, UpstreamBusy, UpstreamRejected, count, error_message, single_prompt

VERSION = "2023-06-01"
REASONS = {"max_tokens": "length", "tool_use": "tool_calls", "refusal": "content_filter"}


class AnthropicWire:
    probe_path = "/models"

    def headers(self, api_key: str, options: dict[str, str]) -> dict[str, str]:
        headers = {"anthropic-version": options.get("anthropic_version") or VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def prepare(self, model: str, request: GenerationRequest) -> Outgoing:
        if request.n != 1:
            raise UpstreamRejected("This model's upstream (Anthropic) returns one choice: use n=1.", param="n")
        sampling = request.sampling
        system_ttl = None
        if request.is_chat:
            system = "\n\n".join(m.content for m in request.messages if m.role == "system" and m.content)
            system_ttl = next((m.cache_ttl for m in request.messages if m.role == "system" and m.cache_ttl), None)
            messages = _messages([m for m in request.messages if m.role != "system"])
        else:
            system, messages = "", [{"role": "user", "content": single_prompt(request, "anthropic")}]
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": sampling.max_tokens,
            "messages": messages,
            "stream": True,
            "temperature": min(sampling.temperature, 1.0),  # Anthropic's range is 0-1
        }
        if system:
            body["system"] = [{"type": "text", "text": system, **_cache(system_ttl)}] if system_ttl else system
        if sampling.top_p < 1:
            body["top_p"] = sampling.top_p
        if sampling.stop:
            body["stop_sequences"] = list(sampling.stop)
        if request.user:
            body["metadata"] = {"user_id": request.user}
        body.update(_tools(request))
        return Outgoing("/messages", body)

    def translator(self, request: GenerationRequest, name: str) -> Translator:
        return AnthropicTranslator(request, name)

    def error_message(self, raw: bytes) -> str:
        return error_message(raw)


def _messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Our turns → Anthropic's: tool results join a user turn, consecutive turns of one role
    merge (Anthropic wants them alternating), the first turn is a user's."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if out and out[-1]["role"] == role:
            out[-1]["content"] += blocks
        else:
            out.append({"role": role, "content": blocks})
    if out and out[0]["role"] != "user":
        out.insert(0, {"role": "user", "content": [{"type": "text", "text": "(continue)"}]})
    return out


def _cache(ttl: str | None) -> dict[str, Any]:
    """Anthropic's `cache_control` for a breakpoint (the 5-minute TTL is its default)."""
    if not ttl:
        return {}
    return {"cache_control": {"type": "ephemeral", **({"ttl": ttl} if ttl != "5m" else {})}}


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    blocks = _plain_blocks(message)
    if message.cache_ttl:  # the breakpoint goes on the message's last block
        blocks[-1] = {**blocks[-1], **_cache(message.cache_ttl)}
    return blocks


def _plain_blocks(message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}]
    blocks: list[dict[str, Any]] = []
    for url in message.images:  # data: URLs by now
        media_type, data = data_url_parts(url)
        blocks.append({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments_object(call.arguments)})
    return blocks or [{"type": "text", "text": ""}]


def _tools(request: GenerationRequest) -> dict[str, Any]:
    if not request.tools:
        return {}
    body: dict[str, Any] = {
        "tools": [
            {
                "name": t.name,
                "description": t.description,
                "input_schema": t.parameters or {"type": "object", "properties": {}},
                **_cache(t.cache_ttl),
            }
            for t in request.tools
        ]
    }
    choice: dict[str, Any] = {  # type: ignore[assignment]
        "auto": {"type": "auto"},
        "none": {"type": "none"},
        "required": {"type": "any"},
        "function": {"type": "tool", "name": request.forced_tool},
    }[request.tool_choice]
    if request.parallel_tool_calls is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    body["tool_choice"] = choice
    return body


class AnthropicTranslator(Translator):
    input_usage: dict[str, Any] | None = None  # message_start's usage, updated by message_delta's
    block_calls: dict[int, bool]

    def feed(self, event: str, data: Any) -> Iterable[Event]:
        if not isinstance(data, dict):
            raise self.failed("an event that is not a JSON object")
        kind = data.get("type") or event
        if kind == "message_start":
            usage = (data.get("message") or {}).get("usage")
            self.input_usage = dict(usage) if isinstance(usage, dict) else {}
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                yield self.new_call(0, str(block.get("id") or ""), str(block.get("name") or ""))
            elif block.get("type") == "text":
                yield from self.text(0, block.get("text") or "")
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                yield from self.text(0, delta.get("text") or "")
            elif delta.get("type") == "input_json_delta":
                yield from self.call_arguments(0, delta.get("partial_json") or "")
        elif kind == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                yield from self.finish(0, REASONS.get(reason, "stop"))  # type: ignore[arg-type]
            usage = data.get("usage")
            if isinstance(usage, dict) and usage.get("output_tokens") is not None:
                # The counts here are cumulative; the input ones, where present, replace
                # message_start's.
                reported = {**(self.input_usage or {}), **{k: v for k, v in usage.items() if v is not None}}
                self.usage = usage_of(reported)
        elif kind == "message_stop":
            self.complete = True
        elif kind == "error":
            error = data.get("error") or {}
            message = str(error.get("message") or "error")[:500]
            if error.get("type") in ("overloaded_error", "rate_limit_error"):
                raise UpstreamBusy(f"The upstream '{self.name}' is overloaded: {message}")
            raise self.failed(message)


def usage_of(reported: dict[str, Any]) -> Usage:
    """Anthropic's usage: cache reads (`cache_read_input_tokens`) and writes
    (`cache_creation_input_tokens`) are *outside* `input_tokens` — added to make our prompt
    count; thinking is inside `output_tokens` and not counted apart (priced as output)."""
    read = count(reported.get("cache_read_input_tokens"))
    write = count(reported.get("cache_creation_input_tokens"))
    return Usage(
        count(reported.get("input_tokens")) + read + write,
        count(reported.get("output_tokens")),
        cached_tokens=read,
        cache_write_tokens=write,
    )
