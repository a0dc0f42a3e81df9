"""Parse and validate /v1 request bodies into GenerationRequests, applying the policy.

Unknown keys are ignored and `null` counts as absent (clients such as SillyTavern and
the `llm` CLI send both); the anti-DoS list in settings is refused by name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from chat.backends.base import ChatMessage, GenerationRequest, SamplingParams, ToolCall, ToolSpec

from .errors import ApiError, bad_request
from .fields import string

MAX_STOP_SEQUENCES = 4
MAX_LEGACY_CHOICES = 32
MAX_TOOLS = 128
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ROLE_ALIASES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}
TEXT_PART_TYPES = {"text", "refusal"}


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    generation: GenerationRequest
    stream: bool
    include_usage: bool
    # The client used the legacy `functions` / `function_call` (GPTunnel and old SDKs):
    # answers carry `function_call` rather than `tool_calls`.
    legacy_functions: bool = False
    # OpenRouter's `models`: the models to try after `generation.model`, in order.
    fallbacks: tuple[str, ...] = ()


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise bad_request(
            "We could not parse the JSON body of your request. Send a JSON object with Content-Type: application/json."
        ) from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


def parse_chat(body: dict[str, Any], policy: dict[str, Any]) -> ParsedRequest:
    model = _model(_with_first_model(body))
    _apply_rejections(body, policy)
    response_format = _response_format(body)
    messages = _with_persona(_messages(body, model), policy)
    tools, choice, forced, legacy = _tools(body)
    breakpoints = _breakpoints(body)
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise bad_request(
            f"At most {MAX_CACHE_BREAKPOINTS} blocks may carry 'cache_control'; this request has {breakpoints}.",
            param="messages",
            code="invalid_value",
        )
    parsed = _assemble(
        body,
        policy,
        GenerationRequest(
            model=model,
            sampling=_sampling(body, policy),
            messages=messages,
            n=_n(body, policy),
            user=_user(body),
            tools=tools,
            tool_choice=choice,
            forced_tool=forced,
            # Legacy `function_call` answers carry one call.
            parallel_tool_calls=False if legacy and tools else _optional(body, "parallel_tool_calls", bool),
            response_format=response_format,
            prompt_cache_key=_prompt_cache_key(body),
        ),
    )
    return replace(parsed, legacy_functions=legacy)


MAX_CACHE_BREAKPOINTS = 4  # Anthropic's limit
CACHE_TTLS = ("5m", "1h")


def _breakpoints(body: dict[str, Any]) -> int:
    """How many blocks carry `cache_control` (messages, their parts, tools), as Anthropic counts them."""
    items = [*(body.get("messages") or []), *(body.get("tools") or [])]
    count = 0
    for item in items:
        if not isinstance(item, dict):
            continue
        count += item.get("cache_control") is not None
        parts = item.get("content")
        if isinstance(parts, list):
            count += sum(1 for part in parts if isinstance(part, dict) and part.get("cache_control") is not None)
    return count


def _prompt_cache_key(body: dict[str, Any]) -> str | None:
    key = _optional(body, "prompt_cache_key", str)
    if key is not None and not 0 < len(key) <= 1024:
        raise bad_request("Invalid 'prompt_cache_key': 1 to 1024 characters.", param="prompt_cache_key")
    return key  # type: ignore[no-any-return]


def cache_ttl(value: Any, where: str) -> str | None:
    """A `cache_control` ({"type": "ephemeral", "ttl"?: "5m" | "1h"}) as its TTL; None when absent."""
    if value is None:
        return None
    ttl = value.get("ttl", "5m") if isinstance(value, dict) else None
    if not isinstance(value, dict) or value.get("type") != "ephemeral" or ttl not in CACHE_TTLS:
        raise bad_request(
            f'Invalid \'{where}.cache_control\': expected {{"type": "ephemeral"}} with an optional "ttl" of '
            '"5m" or "1h".',
            param=f"{where}.cache_control",
            code="invalid_value",
        )
    return str(ttl)


def parse_completion(body: dict[str, Any], policy: dict[str, Any]) -> ParsedRequest:
    model = _model(_with_first_model(body))
    _apply_rejections(body, policy)
    prompts = _prompts(body)
    n = _n(body, policy)
    if len(prompts) * n > MAX_LEGACY_CHOICES:
        raise bad_request(f"Too many choices: len(prompt) x n must be at most {MAX_LEGACY_CHOICES}.", param="n")
    return _assemble(
        body,
        policy,
        GenerationRequest(model=model, sampling=_sampling(body, policy), prompts=prompts, n=n, user=_user(body)),
    )


def _assemble(body: dict[str, Any], policy: dict[str, Any], generation: GenerationRequest) -> ParsedRequest:
    stream = _optional(body, "stream", bool) or False
    options = _optional(body, "stream_options", dict)
    if options is not None and not stream:
        raise bad_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )
    include_usage = bool(options and _optional(options, "include_usage", bool, label="stream_options.include_usage"))
    models = _fallback_models(body, generation.model)
    return ParsedRequest(generation=generation, stream=stream, include_usage=include_usage, fallbacks=models)


MAX_MODELS = 5


def _with_first_model(body: dict[str, Any]) -> dict[str, Any]:
    """A body with `models` and no `model` asks for the first of them."""
    models = body.get("models")
    if body.get("model") is None and isinstance(models, list) and models and isinstance(models[0], str):
        return {**body, "model": models[0]}
    return body


def _fallback_models(body: dict[str, Any], model: str) -> tuple[str, ...]:
    """OpenRouter's `models`: the models to try in order; `model`, where given, first.
    What follows `model` (duplicates dropped)."""
    models = body.get("models")
    if models is None:
        return ()
    if (
        not isinstance(models, list)
        or not 0 < len(models) <= MAX_MODELS
        or not all(isinstance(m, str) and m.strip() for m in models)
    ):
        raise bad_request(
            f"Invalid 'models': expected an array of 1 to {MAX_MODELS} model ids, tried in order.",
            param="models",
            code="invalid_value",
        )
    ordered = list(dict.fromkeys([model, *models]))
    return tuple(ordered[1:])


# --- fields ---------------------------------------------------------------------------


def _optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, label: str | None = None) -> Any:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int in Python; numbers must not accept true/false.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise bad_request(
            f"Invalid type for '{label or name}': expected {_type_name(kind)}.",
            param=label or name,
            code="invalid_type",
        )
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "an object",
        list: "an array",
    }
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in _as_tuple(kind)))


def _number(body: dict[str, Any], name: str, low: float, high: float, default: float) -> float:
    value = _optional(body, name, (int, float))
    if value is None:
        return default
    if not low <= value <= high:
        raise bad_request(
            f"Invalid '{name}': {value} is not between {low:g} and {high:g}.", param=name, code="invalid_value"
        )
    return float(value)


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None or model == "":
        raise bad_request("You must provide a model parameter.", param="model", code="missing_required_parameter")
    if not isinstance(model, str):
        raise bad_request("Invalid type for 'model': expected a string.", param="model", code="invalid_type")
    return model


def _user(body: dict[str, Any]) -> str | None:
    return _optional(body, "user", str)


def _n(body: dict[str, Any], policy: dict[str, Any]) -> int:
    n = _optional(body, "n", int)
    if n is None:
        return 1
    if not 1 <= n <= policy["MAX_N"]:
        raise bad_request(f"Invalid 'n': must be between 1 and {policy['MAX_N']}.", param="n", code="invalid_value")
    return int(n)


def _max_tokens(body: dict[str, Any], policy: dict[str, Any]) -> int:
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = _optional(body, name, int)
    low, high = policy["MAX_TOKENS_MIN"], policy["MAX_TOKENS_MAX"]
    if value is None:
        return int(high)
    if value < 1:
        raise bad_request(f"Invalid '{name}': must be a positive integer.", param=name, code="invalid_value")
    # GhostGPT policy: tiny budgets are a common client mistake; they get the full budget.
    return int(high) if value < low else int(min(value, high))


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = _optional(body, "stop", (str, list))
    if stop is None:
        return ()
    sequences = [stop] if isinstance(stop, str) else stop
    if len(sequences) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) for s in sequences):
        raise bad_request(
            f"Invalid 'stop': a string or an array of up to {MAX_STOP_SEQUENCES} strings.",
            param="stop",
            code="invalid_value",
        )
    return tuple(s for s in sequences if s)


def _seed(body: dict[str, Any]) -> int | None:
    seed = _optional(body, "seed", int)
    return None if seed is None else int(seed)


def _sampling(body: dict[str, Any], policy: dict[str, Any]) -> SamplingParams:
    return SamplingParams(
        max_tokens=_max_tokens(body, policy),
        temperature=_number(body, "temperature", 0, 2, 1.0),
        top_p=_number(body, "top_p", 0, 1, 1.0),
        presence_penalty=_number(body, "presence_penalty", -2, 2, 0.0),
        frequency_penalty=_number(body, "frequency_penalty", -2, 2, 0.0),
        stop=_stop(body),
        seed=_seed(body),
    )


# --- policy ---------------------------------------------------------------------------


def _present(value: Any) -> bool:
    return value not in (None, "", {}, [])


def _apply_rejections(body: dict[str, Any], policy: dict[str, Any]) -> None:
    for name in policy["REJECTED_PARAMS"]:
        if _present(body.get(name)):
            raise bad_request(
                f"The '{name}' parameter is not allowed on this server.", param=name, code="unsupported_parameter"
            )


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    """`response_format`: None for text, else OpenAI's object (whether this model can honour
    it depends on its backend: the view checks its capabilities)."""
    value = body.get("response_format")
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = value.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
            raise bad_request(
                "response_format.json_schema: expected an object with a name and a schema.",
                param="response_format",
            )
        return {"type": "json_schema", "json_schema": schema}
    raise bad_request(
        "Invalid 'response_format': expected type text, json_object or json_schema.",
        param="response_format",
        code="invalid_value",
    )


# --- function calling ---------------------------------------------------------------------


def _tools(body: dict[str, Any]) -> tuple[tuple[ToolSpec, ...], str, str | None, bool]:
    """`tools` + `tool_choice`, or the legacy `functions` + `function_call` (not both):
    (tools, choice, forced function name, legacy?)."""
    tools_raw, functions_raw = body.get("tools"), body.get("functions")
    if _present(tools_raw) and _present(functions_raw):
        raise bad_request("Send either 'tools' or the legacy 'functions', not both.", param="functions")
    legacy = _present(functions_raw) or (not _present(tools_raw) and _present(body.get("function_call")))
    name, choice_name = ("functions", "function_call") if legacy else ("tools", "tool_choice")
    raw = functions_raw if legacy else tools_raw
    specs: list[ToolSpec] = []
    if raw is not None:
        if not isinstance(raw, list) or len(raw) > MAX_TOOLS:
            raise bad_request(f"'{name}' must be an array of at most {MAX_TOOLS} functions.", param=name)
        for i, item in enumerate(raw):
            specs.append(_tool_spec(item, f"{name}[{i}]", legacy))
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise bad_request(f"Function names in '{name}' must be unique.", param=name, code="invalid_value")
    choice, forced = _tool_choice(body.get(choice_name), choice_name, legacy, {spec.name for spec in specs})
    if not specs and choice in ("required", "function"):
        raise bad_request(f"'{choice_name}' names a function but no '{name}' were given.", param=choice_name)
    return tuple(specs), choice, forced, legacy


def function_tool(item: Any, *parameters_keys: str) -> Any:
    """Another dialect's function declaration ({name, description, and its schema under the
    first of `parameters_keys` present}) as an OpenAI `tools` entry; anything else is passed
    on for `_tool_spec` to refuse by name."""
    if not isinstance(item, dict):
        return item
    parameters = next((item[key] for key in parameters_keys if item.get(key) is not None), None)
    function = {"name": item.get("name"), "description": item.get("description") or "", "parameters": parameters}
    tool: dict[str, Any] = {"type": "function", "function": function}
    if item.get("cache_control") is not None:
        tool["cache_control"] = item["cache_control"]
    return tool


def _tool_spec(item: Any, where: str, legacy: bool) -> ToolSpec:
    ttl = cache_ttl(item.get("cache_control"), where) if isinstance(item, dict) else None
    if not legacy:
        if not isinstance(item, dict) or item.get("type") != "function" or not isinstance(item.get("function"), dict):
            raise bad_request(
                f'Invalid \'{where}\': expected {{"type": "function", "function": {{"name": ...}}}}.', param=where
            )
        item, where = item["function"], f"{where}.function"
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not FUNCTION_NAME.match(item["name"]):
        raise bad_request(
            f"Invalid '{where}.name': 1-64 letters, digits, '_', '.' or '-'.",
            param=f"{where}.name",
            code="invalid_value",
        )
    parameters = item.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad_request(f"Invalid '{where}.parameters': expected a JSON Schema object.", param=f"{where}.parameters")
    description = _optional(item, "description", str, label=f"{where}.description") or ""
    ttl = ttl or cache_ttl(item.get("cache_control"), where)
    return ToolSpec(name=item["name"], description=description, parameters=parameters, cache_ttl=ttl)


def _tool_choice(value: Any, param: str, legacy: bool, names: set[str]) -> tuple[str, str | None]:
    if value is None:
        return "auto", None
    if value in ("auto", "none") or (value == "required" and not legacy):
        return value, None
    if isinstance(value, dict):
        function = value if legacy else (value.get("function") if value.get("type") == "function" else None)
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            if name not in names:
                raise bad_request(f"Invalid '{param}': no function named '{name}' was given.", param=param)
            return "function", name
    allowed = '"auto", "none"' + ("" if legacy else ', "required"')
    shape = '{"name": ...}' if legacy else '{"type": "function", "function": {"name": ...}}'
    raise bad_request(f"Invalid '{param}': expected {allowed} or {shape}.", param=param, code="invalid_value")


def _tool_calls(item: dict[str, Any], where: str) -> tuple[ToolCall, ...]:
    """An assistant message's `tool_calls` (or legacy `function_call`)."""
    legacy = item.get("function_call")
    raw = item.get("tool_calls")
    if raw is None and isinstance(legacy, dict):
        raw = [{"id": "call_" + where.removeprefix("messages[").rstrip("]"), "type": "function", "function": legacy}]
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise bad_request(f"Invalid '{where}.tool_calls': expected an array.", param=f"{where}.tool_calls")
    calls = []
    for j, call in enumerate(raw):
        param = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request(f"Invalid '{param}': expected a function call with a name.", param=param)
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments, ensure_ascii=False)
        elif arguments is not None and not isinstance(arguments, str):
            raise bad_request(
                f"Invalid '{param}.function.arguments': expected a JSON string.",
                param=f"{param}.function.arguments",
                code="invalid_type",
            )
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else f"call_{j}"
        calls.append(ToolCall(id=call_id, name=function["name"], arguments=arguments or "{}"))
    return tuple(calls)


# --- messages and prompts ----------------------------------------------------------------


def _messages(body: dict[str, Any], model: str) -> list[ChatMessage]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request(
            "'messages' must be a non-empty array of message objects.", param="messages", code="invalid_value"
        )
    return _link_tool_results([_message(item, i, model) for i, item in enumerate(messages)])


def _link_tool_results(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Each tool result learns the name of the call it answers (Gemini matches by name), and
    legacy `function` results the id of the last call of their function."""
    calls: dict[str, str] = {}  # call id -> function name
    last_by_name: dict[str, str] = {}
    linked = []
    for message in messages:
        for call in message.tool_calls:
            calls[call.id] = call.name
            last_by_name[call.name] = call.id
        if message.role == "tool" and message.tool_call_id:
            call_id = message.tool_call_id
            if call_id.startswith("function:"):
                call_id = last_by_name.get(call_id[len("function:") :], call_id)
            message = replace(message, tool_call_id=call_id, name=message.name or calls.get(call_id))
        linked.append(message)
    return linked


def _message(item: Any, i: int, model: str) -> ChatMessage:
    where = f"messages[{i}]"
    if not isinstance(item, dict):
        raise bad_request(f"Invalid '{where}': expected an object.", param=where, code="invalid_type")
    raw_role = item.get("role")
    role = ROLE_ALIASES.get(raw_role) if isinstance(raw_role, str) else None  # an object is no role (not a 500)
    if role is None:
        raise bad_request(
            f"Invalid '{where}.role': expected one of {', '.join(ROLE_ALIASES)}.",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = item.get("content")
    if content is None and role in ("assistant", "tool"):
        content = ""
    text, images, ttl = _content(content, where, model)
    ttl = cache_ttl(item.get("cache_control"), where) or ttl
    if images and role != "user":
        raise bad_request(f"Invalid '{where}': only user messages may contain images.", param=where)
    calls = _tool_calls(item, where) if role == "assistant" else ()
    call_id, name = None, _optional(item, "name", str, label=f"{where}.name")
    if role == "tool":
        call_id = item.get("tool_call_id")
        if item.get("role") == "function":  # legacy: answers the last call of that name
            call_id = call_id or f"function:{name or ''}"
        if not isinstance(call_id, str) or not call_id:
            raise bad_request(
                f"Missing '{where}.tool_call_id': a tool message answers one tool call.",
                param=f"{where}.tool_call_id",
                code="missing_required_parameter",
            )
    return ChatMessage(
        role=role,  # type: ignore[arg-type]
        content=text,
        images=images,
        origin=where,
        tool_calls=calls,
        tool_call_id=call_id,
        name=name,
        cache_ttl=ttl,
    )


def _content(content: Any, where: str, model: str) -> tuple[str, tuple[str, ...], str | None]:
    """The text, the images, and the prompt-cache breakpoint a part carries (its TTL)."""
    if isinstance(content, str):
        return content, (), None
    if not isinstance(content, list):
        raise bad_request(
            f"Invalid '{where}.content': expected a string or an array of content parts.",
            param=f"{where}.content",
            code="invalid_type",
        )
    texts, images, ttl = [], [], None
    for j, part in enumerate(content):
        param = f"{where}.content[{j}]"
        kind = string(part.get("type")) if isinstance(part, dict) else None
        if kind is not None:
            ttl = cache_ttl(part.get("cache_control"), param) or ttl
        if kind in TEXT_PART_TYPES and isinstance(part.get(kind), str):
            texts.append(part[kind])
        elif kind in ("image_url", "input_image"):
            images.append(_image_url(part, param))
        else:
            raise bad_request(
                f'Invalid \'{param}\': expected a content part such as {{"type": "text", "text": "..."}}.',
                param=param,
                code="invalid_value",
            )
    return "\n".join(texts), tuple(images), ttl


def _image_url(part: dict[str, Any], param: str) -> str:
    """`{"type": "image_url", "image_url": {"url": ...}}` (or a bare string there, or the
    Responses-style `input_image`): a data:image/… URL or an http(s) URL."""
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not (url.startswith("data:image/") or url.startswith(("http://", "https://"))):
        raise bad_request(
            f"Invalid '{param}.image_url.url': expected a data:image/… URL or an http(s) URL.",
            param=f"{param}.image_url.url",
            code="invalid_value",
        )
    return url


def _with_persona(messages: list[ChatMessage], policy: dict[str, Any]) -> tuple[ChatMessage, ...]:
    """The server's persona prompt comes first; client system text is appended or dropped."""
    system_texts = [policy["SYSTEM_PROMPT"].strip()] if policy["SYSTEM_PROMPT"].strip() else []
    if policy["CLIENT_SYSTEM"] == "append":
        system_texts += [m.content.strip() for m in messages if m.role == "system" and m.content.strip()]
    rest = tuple(m for m in messages if m.role != "system")
    # A cache breakpoint on any system message marks the one system text they become.
    ttl = next((m.cache_ttl for m in messages if m.role == "system" and m.cache_ttl), None)
    head = (ChatMessage(role="system", content="\n\n".join(system_texts), cache_ttl=ttl),) if system_texts else ()
    return head + rest


def _prompts(body: dict[str, Any]) -> tuple[str | tuple[int, ...], ...]:
    prompt = body.get("prompt")
    error = bad_request(
        "'prompt' must be a string, an array of strings, an array of token ids or an array of token-id arrays.",
        param="prompt",
        code="invalid_value",
    )
    if isinstance(prompt, str):
        return (prompt,)
    if not isinstance(prompt, list) or not prompt:
        raise error
    if all(isinstance(p, str) for p in prompt):
        items: list[str | tuple[int, ...]] = list(prompt)
    elif all(_is_token(t) for t in prompt):
        items = [tuple(prompt)]
    elif all(isinstance(p, list) and p and all(_is_token(t) for t in p) for p in prompt):
        items = [tuple(p) for p in prompt]
    else:
        raise error
    if len(items) > MAX_LEGACY_CHOICES:
        raise bad_request(f"At most {MAX_LEGACY_CHOICES} prompts per request.", param="prompt", code="invalid_value")
    return tuple(items)


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["ApiError", "ParsedRequest", "parse_chat", "parse_completion", "parse_json_object"]
