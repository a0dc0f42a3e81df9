"""The Gemini API on our side: `POST /v1beta/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse` (also under `/v1/`, where google-genai 3.x with a custom
base URL sends them), for the official `google-genai` SDK against any model GhostGPT routes.

Like /v1/messages, the request is translated into the OpenAI shape and runs through the
same auth (`x-goog-api-key`, `?key=` or Bearer), limits, billing and backend; only the
encoder differs. Errors are `{"error": {"code", "message", "status"}}`.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.http import HttpRequest, HttpResponse

from chat.backends.base import Event, TextDelta, Usage, arguments_object
from chat.jsonbytes import dumps

from .encoders import Encoder
from .errors import bad_request, reshaped_errors
from .fields import string
from .params import ParsedRequest, function_tool, parse_chat

FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": STATUSES.get(status, "INTERNAL")}}


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + dumps(data) + b"\r\n\r\n"


# --- request ----------------------------------------------------------------------------------


def parser_for(model: str, stream: bool) -> Any:
    """The parse function for one call: the model and streaming come from the URL."""

    def parse(body: dict[str, Any], policy: dict[str, Any]) -> ParsedRequest:
        return parse_generate_content(body, policy, model=model, stream=stream)

    return parse


def parse_generate_content(body: dict[str, Any], policy: dict[str, Any], *, model: str, stream: bool) -> ParsedRequest:
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list) or not contents:
        raise bad_request("* GenerateContentRequest.contents: contents is not specified", param="contents")
    messages: list[dict[str, Any]] = []
    system = body.get("systemInstruction") or body.get("system_instruction")
    if system:
        messages.append({"role": "system", "content": _text(system, "systemInstruction")})
    calls: list[tuple[str, str]] = []  # (id, name) of the model's function calls so far
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            raise bad_request(f"contents[{i}]: expected a Content object.", param=f"contents[{i}]")
        given = content.get("role")
        roles = {"user": "user", "model": "assistant", "function": "user", "tool": "user"}
        role = "user" if given is None else roles.get(string(given) or "")
        if role is None:
            raise bad_request(f"contents[{i}].role: must be 'user' or 'model'.", param=f"contents[{i}].role")
        messages.extend(_content_messages(content.get("parts"), role, f"contents[{i}]", calls))
    config = body.get("generationConfig") or body.get("generation_config") or {}
    if not isinstance(config, dict):
        raise bad_request("generationConfig: expected an object.", param="generationConfig")
    translated: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("max_tokens", "maxOutputTokens"),
        ("stop", "stopSequences"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if config.get(theirs) is not None:
            translated[ours] = config[theirs]
    translated.update(_tools(body))
    return parse_chat(translated, policy)


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    """Gemini `tools[].functionDeclarations` / `toolConfig` → OpenAI's (validated there)."""
    tools = body.get("tools")
    if not tools:
        return {}
    if not isinstance(tools, list):
        raise bad_request("tools: expected a list of Tool objects.", param="tools")
    declarations = []
    for tool in tools:
        found = (
            (tool.get("functionDeclarations") or tool.get("function_declarations")) if isinstance(tool, dict) else None
        )
        if not isinstance(found, list):
            raise bad_request("tools: only functionDeclarations are supported.", param="tools")
        declarations += found
    translated: dict[str, Any] = {
        "tools": [function_tool(d, "parameters", "parametersJsonSchema") for d in declarations]
    }
    config = body.get("toolConfig") or body.get("tool_config") or {}
    calling = (
        (config.get("functionCallingConfig") or config.get("function_calling_config"))
        if isinstance(config, dict)
        else None
    )
    if isinstance(calling, dict):
        mode = str(calling.get("mode") or "AUTO").upper()
        allowed = calling.get("allowedFunctionNames") or calling.get("allowed_function_names") or []
        if mode == "ANY" and isinstance(allowed, list) and len(allowed) == 1:
            translated["tool_choice"] = {"type": "function", "function": {"name": allowed[0]}}
        else:
            translated["tool_choice"] = {"ANY": "required", "NONE": "none"}.get(mode, "auto")
    return translated


def _content_messages(parts: Any, role: str, where: str, calls: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One Content → OpenAI messages: `functionCall` parts become the assistant's tool calls
    (numbered ids), `functionResponse` parts `tool` messages answering the latest call of
    that name."""
    if not isinstance(parts, list) or not parts:
        raise bad_request(f"{where}.parts: must not be empty.", param=f"{where}.parts")
    out: list[dict[str, Any]] = []
    plain, tool_calls = [], []
    for j, part in enumerate(parts):
        call = (part.get("functionCall") or part.get("function_call")) if isinstance(part, dict) else None
        answer = (part.get("functionResponse") or part.get("function_response")) if isinstance(part, dict) else None
        if isinstance(call, dict) and role == "assistant":
            call_id = str(call.get("id") or f"call_{len(calls)}")
            calls.append((call_id, str(call.get("name"))))
            arguments = json.dumps(call.get("args") or {}, ensure_ascii=False)
            tool_calls.append(
                {"id": call_id, "type": "function", "function": {"name": call.get("name"), "arguments": arguments}}
            )
        elif isinstance(answer, dict):
            name = str(answer.get("name"))
            call_id = answer.get("id") or next((cid for cid, n in reversed(calls) if n == name), f"call_{name}")
            response = answer.get("response")
            text = json.dumps(response, ensure_ascii=False) if not isinstance(response, str) else response
            out.append({"role": "tool", "tool_call_id": str(call_id), "name": name, "content": text})
        elif isinstance(part, dict) and part.get("thought"):
            continue
        else:
            plain.append((j, part))
    if plain or tool_calls or not out:
        message: dict[str, Any] = {"role": role, "content": _parts([p for _, p in plain], where) if plain else ""}
        if tool_calls:
            message["tool_calls"] = tool_calls
        out.append(message)
    return out


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    parts = value.get("parts") if isinstance(value, dict) else None
    if isinstance(parts, list):
        return "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
    raise bad_request(f"{where}: expected a Content with text parts.", param=where)


def _parts(parts: list[Any], where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise bad_request(f"{where}.parts[{j}]: expected a Part.", param=f"{where}.parts[{j}]")
        inline = part.get("inlineData") or part.get("inline_data")
        if isinstance(part.get("text"), str):
            out.append({"type": "text", "text": part["text"]})
        elif isinstance(inline, dict) and str(inline.get("mimeType", inline.get("mime_type", ""))).startswith("image/"):
            mime = inline.get("mimeType") or inline.get("mime_type")
            out.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{inline.get('data', '')}"}})
        else:
            raise bad_request(
                f"{where}.parts[{j}]: only text and inline images are supported by this model.",
                param=f"{where}.parts[{j}]",
            )
    return out


# --- response -------------------------------------------------------------------------------


class GenerateContentEncoder(Encoder):
    """Backend events → GenerateContentResponse chunks (SSE) or one response. Function calls
    go out whole (`functionCall` with parsed `args`), as Gemini sends them, when their
    choice finishes."""

    id_prefix = ""

    def _candidate(
        self, index: int, text: str | None, reason: str | None, calls: list[dict[str, str]] | None = None
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"index": index}
        parts: list[dict[str, Any]] = [{"text": text}] if text is not None and (text or not calls) else []
        parts += [
            {"functionCall": {"id": c["id"], "name": c["name"], "args": arguments_object(c["arguments"])}}
            for c in calls or ()
        ]
        if parts:
            candidate["content"] = {"role": "model", "parts": parts}
        if reason:
            candidate["finishReason"] = FINISH_REASONS.get(reason, "STOP")
        return candidate

    def _response(self, candidates: list[dict[str, Any]], usage: Usage | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"candidates": candidates, "modelVersion": self.model, "responseId": self.id}
        if usage is not None:
            # Gemini's shape: the cached part inside promptTokenCount, thinking outside
            # candidatesTokenCount (both counted in totalTokenCount).
            body["usageMetadata"] = {
                "promptTokenCount": usage.prompt_tokens,
                "candidatesTokenCount": max(0, usage.completion_tokens - usage.reasoning_tokens),
                "totalTokenCount": usage.total_tokens,
                **({"cachedContentTokenCount": usage.cached_tokens} if usage.cached_tokens else {}),
                **({"thoughtsTokenCount": usage.reasoning_tokens} if usage.reasoning_tokens else {}),
            }
        return body

    def encode(self, event: Event) -> bytes:
        self.record(event)
        if isinstance(event, TextDelta):
            return _sse(self._response([self._candidate(event.index, event.text, None)]))
        if isinstance(event, Usage):
            candidates = [
                self._candidate(i, "", self.finish[i] or "stop", self.calls[i]) for i in range(self.choice_count)
            ]
            return _sse(self._response(candidates, event))
        return b""  # Accepted, Finish and call pieces: nothing on the wire of their own

    def error(self, error: Any) -> bytes:
        return _sse(error_body(error.status, error.message))

    def end(self) -> bytes:
        return b""

    def body(self) -> dict[str, Any]:
        candidates = [
            self._candidate(i, "".join(parts), self.finish[i] or "stop", self.calls[i])
            for i, parts in enumerate(self.texts)
        ]
        return self._response(candidates, self.usage or Usage(0, 0))


def gemini_errors(view: Any) -> Any:
    """Gemini clients may send the key as `?key=` (redacted in the access log); errors
    leave in Gemini's shape."""
    reshaped = reshaped_errors(error_body)(view)

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        request.query_key = request.GET.get("key")  # type: ignore[attr-defined]
        return await reshaped(request, *args, **kwargs)

    return wrapper
