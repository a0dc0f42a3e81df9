"""OpenAI's Chat Completions / Completions wire (vLLM, llama.cpp server, Ollama, OpenAI,
OpenRouter, another GhostGPT): our request is nearly theirs; usage is asked for with
`stream_options.include_usage`. A request whose client does not stream is sent with
`stream: false` (usage always comes with the whole answer): one JSON body to read, not a
stream of chunks — see `OpenAITranslator.whole`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chat.backends.base import ChatMessage, Event, GenerationRequest, Usage

from .base import Outgoing, Translator, count, error_message

REASONS = {
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIWire:
    probe_path = "/models"

    def headers(self, api_key: str, options: dict[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def prepare(self, model: str, request: GenerationRequest) -> Outgoing:
        body = sampling_body(model, request)
        body["n"] = request.n
        if not request.stream:
            body["stream"] = False
            del body["stream_options"]
        if request.is_chat:
            body["messages"] = [chat_message(m) for m in request.messages]
            body.update(tools_body(request))
            if request.response_format is not None:  # where the model declared it (fit_request)
                body["response_format"] = request.response_format
            return Outgoing("/chat/completions", body)
        body["prompt"] = [p if isinstance(p, str) else list(p) for p in request.prompts]
        return Outgoing("/completions", body)

    def translator(self, request: GenerationRequest, name: str) -> Translator:
        return OpenAITranslator(request, name)

    def error_message(self, raw: bytes) -> str:
        return error_message(raw)


def sampling_body(model: str, request: GenerationRequest) -> dict[str, Any]:
    sampling = request.sampling
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }
    if sampling.presence_penalty:
        body["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty:
        body["frequency_penalty"] = sampling.frequency_penalty
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if request.user:
        body["user"] = request.user
    if request.prompt_cache_key:
        body["prompt_cache_key"] = request.prompt_cache_key
    return body


def chat_message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:  # data: URLs by now (chat.api.images.images_inline)
        parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
        out["content"] = parts + [{"type": "image_url", "image_url": {"url": url}} for url in message.images]
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
    return out


def tools_body(request: GenerationRequest) -> dict[str, Any]:
    if not request.tools:
        return {}
    body: dict[str, Any] = {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters or {"type": "object", "properties": {}},
                },
            }
            for t in request.tools
        ]
    }
    if request.tool_choice == "function":
        body["tool_choice"] = {"type": "function", "function": {"name": request.forced_tool}}
    elif request.tool_choice != "auto":
        body["tool_choice"] = request.tool_choice
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    return body


class OpenAITranslator(Translator):
    def feed(self, event: str, data: Any) -> Iterable[Event]:
        if data == "[DONE]":
            self.complete = True
            return
        if not isinstance(data, dict):
            raise self.failed("a chunk that is not a JSON object")
        if "error" in data:
            raise self.failed(error_message_of(data))
        for choice in data.get("choices") or []:
            index = int(choice.get("index", 0))
            if self.request.is_chat:
                delta = choice.get("delta") or {}
                yield from self.text(index, delta.get("content") or "")
                yield from self._calls(index, delta)
            else:
                yield from self.text(index, choice.get("text") or "")
            reason = choice.get("finish_reason")
            if reason:
                yield from self.finish(index, REASONS.get(reason, "stop"))  # type: ignore[arg-type]
        if isinstance(data.get("usage"), dict):
            self.usage = usage_of(data["usage"])

    def whole(self, data: Any) -> Iterable[Event]:
        """A whole (non-streamed) answer: a `chat.completion` or `text_completion` object,
        read as the one chunk it adds up to — each choice's message as its delta, tool calls
        numbered in order — followed by the end of the stream."""
        if not isinstance(data, dict):
            raise self.failed("an answer that is not a JSON object")
        if "error" in data:
            raise self.failed(error_message_of(data))
        choices = []
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict):
                raise self.failed("a choice that is not a JSON object")
            message = choice.get("message")
            if self.request.is_chat and isinstance(message, dict):
                calls = message.get("tool_calls")
                delta = dict(message)
                if isinstance(calls, list):
                    delta["tool_calls"] = [
                        {**call, "index": number} for number, call in enumerate(calls) if isinstance(call, dict)
                    ]
                choice = {**choice, "delta": delta}
            choices.append(choice)
        yield from self.feed("", {**data, "choices": choices})
        yield from self.feed("", "[DONE]")

    def _calls(self, index: int, delta: dict[str, Any]) -> Iterable[Event]:
        calls = delta.get("tool_calls") or []
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):  # an upstream answering in the legacy shape
            calls = [{"index": 0, "id": "call_0" if legacy.get("name") else None, "function": legacy}]
        for call in calls:
            function = call.get("function") or {}
            number = int(call.get("index") or 0)
            arguments = function.get("arguments") or ""
            if number >= self.calls.get(index, 0) and (call.get("id") or function.get("name")):
                call_id = call.get("id") or f"call_{index}_{number}"
                yield self.new_call(index, call_id, function.get("name") or "", arguments)
            else:
                yield from self.call_arguments(index, arguments, number)


def usage_of(reported: dict[str, Any]) -> Usage:
    """OpenAI's usage object: cached input inside `prompt_tokens`
    (`prompt_tokens_details.cached_tokens`), reasoning inside `completion_tokens`
    (`completion_tokens_details.reasoning_tokens`) — our convention already. DeepSeek's
    `prompt_cache_hit_tokens` (of `prompt_tokens` too) stands in where the details are absent."""
    prompt_details = reported.get("prompt_tokens_details")
    completion_details = reported.get("completion_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, dict) else {}
    completion_details = completion_details if isinstance(completion_details, dict) else {}
    cached = prompt_details.get("cached_tokens")
    if cached is None:
        cached = reported.get("prompt_cache_hit_tokens")
    return Usage(
        count(reported.get("prompt_tokens")),
        count(reported.get("completion_tokens")),
        cached_tokens=count(cached),
        cache_write_tokens=count(prompt_details.get("cache_write_tokens")),
        reasoning_tokens=count(completion_details.get("reasoning_tokens")),
    )


def error_message_of(data: dict[str, Any]) -> str:
    error = data.get("error")
    message = error.get("message") if isinstance(error, dict) else error
    return str(message)[:500]
