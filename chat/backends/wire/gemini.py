"""Gemini's API as an upstream: `POST {base_url}/models/{model}:streamGenerateContent?alt=sse`
with `x-goog-api-key`. Roles become `user`/`model`, system text `systemInstruction`, tool
calls `functionCall` parts, tool results `functionResponse` parts (matched by name),
images `inlineData`. Gemini sends each function call whole, with parsed `args`."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from typing import Any

from chat.backends.base import ChatMessage, Event, GenerationRequest, Usage, arguments_object, data_url_parts

from .base import Outgoing, Translator, UpstreamBusy, count, error_message, single_prompt

REASONS = {
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}


class GeminiWire:
    probe_path = "/models"

    def headers(self, api_key: str, options: dict[str, str]) -> dict[str, str]:
        return {"x-goog-api-key": api_key} if api_key else {}

    def prepare(self, model: str, request: GenerationRequest) -> Outgoing:
        sampling = request.sampling
        config: dict[str, Any] = {
            "maxOutputTokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "topP": sampling.top_p,
            "candidateCount": request.n,
        }
        if sampling.stop:
            config["stopSequences"] = list(sampling.stop)
        if sampling.seed is not None:
            config["seed"] = sampling.seed
        if sampling.presence_penalty:
            config["presencePenalty"] = sampling.presence_penalty
        if sampling.frequency_penalty:
            config["frequencyPenalty"] = sampling.frequency_penalty
        form = request.response_format or {}
        if form.get("type") in ("json_object", "json_schema"):  # JSON mode: Gemini's own switch
            config["responseMimeType"] = "application/json"
        if form.get("type") == "json_schema" and isinstance(form["json_schema"].get("schema"), dict):
            config["responseJsonSchema"] = form["json_schema"]["schema"]
        if request.is_chat:
            system = "\n\n".join(m.content for m in request.messages if m.role == "system" and m.content)
            contents = _contents([m for m in request.messages if m.role != "system"])
        else:
            system, contents = "", [{"role": "user", "parts": [{"text": single_prompt(request, "gemini")}]}]
        body: dict[str, Any] = {"contents": contents, "generationConfig": config}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        body.update(_tools(request))
        return Outgoing(f"/models/{model}:streamGenerateContent", body, params={"alt": "sse"})

    def translator(self, request: GenerationRequest, name: str) -> Translator:
        return GeminiTranslator(request, name)

    def error_message(self, raw: bytes) -> str:
        return error_message(raw)


def _contents(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        role = "model" if message.role == "assistant" else "user"
        parts = _parts(message)
        if out and out[-1]["role"] == role:
            out[-1]["parts"] += parts
        else:
            out.append({"role": role, "parts": parts})
    return out


def _parts(message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        try:
            response = json.loads(message.content)
        except ValueError:
            response = None
        if not isinstance(response, dict):  # Gemini wants an object
            response = {"content": message.content}
        return [{"functionResponse": {"name": message.name or "", "response": response}}]
    parts: list[dict[str, Any]] = []
    if message.content:
        parts.append({"text": message.content})
    for url in message.images:  # data: URLs by now
        mime_type, data = data_url_parts(url)
        parts.append({"inlineData": {"mimeType": mime_type, "data": data}})
    for call in message.tool_calls:
        parts.append({"functionCall": {"name": call.name, "args": arguments_object(call.arguments)}})
    return parts or [{"text": ""}]


def _tools(request: GenerationRequest) -> dict[str, Any]:
    if not request.tools:
        return {}
    declarations = []
    for tool in request.tools:
        declaration: dict[str, Any] = {"name": tool.name, "description": tool.description}
        if tool.parameters and tool.parameters.get("properties"):
            declaration["parametersJsonSchema"] = tool.parameters
        declarations.append(declaration)
    mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}[request.tool_choice]
    calling: dict[str, Any] = {"mode": mode}
    if request.tool_choice == "function":
        calling["allowedFunctionNames"] = [request.forced_tool]
    return {"tools": [{"functionDeclarations": declarations}], "toolConfig": {"functionCallingConfig": calling}}


class GeminiTranslator(Translator):
    def feed(self, event: str, data: Any) -> Iterable[Event]:
        if not isinstance(data, dict):
            raise self.failed("a chunk that is not a JSON object")
        if "error" in data:
            error = data["error"] if isinstance(data["error"], dict) else {}
            message = str(error.get("message") or data["error"])[:500]
            if error.get("status") in ("RESOURCE_EXHAUSTED", "UNAVAILABLE"):
                raise UpstreamBusy(f"The upstream '{self.name}' is overloaded: {message}")
            raise self.failed(message)
        candidates = data.get("candidates") or []
        for candidate in candidates:
            index = int(candidate.get("index") or 0)
            for part in (candidate.get("content") or {}).get("parts") or []:
                if part.get("thought"):
                    continue  # thinking summaries are not the answer
                if isinstance(part.get("text"), str):
                    yield from self.text(index, part["text"])
                call = part.get("functionCall")
                if isinstance(call, dict):
                    call_id = str(call.get("id") or "call_" + secrets.token_hex(8))
                    yield self.new_call(index, call_id, str(call.get("name") or ""), json.dumps(call.get("args") or {}))
            reason = candidate.get("finishReason")
            if reason:
                mapped = "tool_calls" if self.calls.get(index) else REASONS.get(reason, "stop")
                yield from self.finish(index, mapped)  # type: ignore[arg-type]
        blocked = (data.get("promptFeedback") or {}).get("blockReason")
        if blocked and not candidates:
            for index in range(self.request.choice_count):
                yield from self.finish(index, "content_filter")
        usage = data.get("usageMetadata")
        if isinstance(usage, dict):
            # Cached input is inside promptTokenCount; thinking is *outside*
            # candidatesTokenCount and billed as output.
            thoughts = count(usage.get("thoughtsTokenCount"))
            self.usage = Usage(
                count(usage.get("promptTokenCount")),
                count(usage.get("candidatesTokenCount")) + thoughts,
                cached_tokens=count(usage.get("cachedContentTokenCount")),
                reasoning_tokens=thoughts,
            )
        if len(self.finished) >= self.request.choice_count:
            self.complete = True  # Gemini's stream has no terminator: the last chunk has finishReason
