"""Parse and validate /v1 request bodies into GenerationRequests, applying the policy.

Unknown keys are ignored and `null` counts as absent (clients such as SillyTavern and
the `llm` CLI send both); the anti-DoS list in settings is refused by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chat.backends.base import ChatMessage, GenerationRequest, SamplingParams

from .errors import ApiError, bad_request

MAX_STOP_SEQUENCES = 4
MAX_LEGACY_CHOICES = 32
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
    model = _model(body)
    _apply_rejections(body, policy)
    _refuse_unsupported(body, model)
    messages = _with_persona(_messages(body, model), policy)
    return _assemble(
        body,
        policy,
        GenerationRequest(
            model=model, sampling=_sampling(body, policy), messages=messages, n=_n(body, policy), user=_user(body)
        ),
    )


def parse_completion(body: dict[str, Any], policy: dict[str, Any]) -> ParsedRequest:
    model = _model(body)
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
    return ParsedRequest(generation=generation, stream=stream, include_usage=include_usage)


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
    response_format = body.get("response_format")
    if (
        isinstance(response_format, dict)
        and response_format.get("type") == "json_schema"
        and "json_schema" in policy["REJECTED_PARAMS"]
    ):
        raise bad_request(
            "The 'json_schema' response format is not allowed on this server.",
            param="response_format",
            code="unsupported_parameter",
        )


def _refuse_unsupported(body: dict[str, Any], model: str) -> None:
    """Capabilities the backends of this release cannot honour: a clear 400, not silence."""
    for name in ("tools", "functions"):
        if _present(body.get(name)):
            raise bad_request(
                f"Model '{model}' does not support function calling ('{name}').",
                param=name,
                code="unsupported_parameter",
            )
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise bad_request(
            f"Model '{model}' supports only the 'text' response format.",
            param="response_format",
            code="unsupported_parameter",
        )


# --- messages and prompts ----------------------------------------------------------------


def _messages(body: dict[str, Any], model: str) -> list[ChatMessage]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request(
            "'messages' must be a non-empty array of message objects.", param="messages", code="invalid_value"
        )
    return [_message(item, i, model) for i, item in enumerate(messages)]


def _message(item: Any, i: int, model: str) -> ChatMessage:
    where = f"messages[{i}]"
    if not isinstance(item, dict):
        raise bad_request(f"Invalid '{where}': expected an object.", param=where, code="invalid_type")
    role = ROLE_ALIASES.get(item.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise bad_request(
            f"Invalid '{where}.role': expected one of {', '.join(ROLE_ALIASES)}.",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = item.get("content")
    if content is None and role in ("assistant", "tool"):
        content = ""
    text, images = _content(content, where, model)
    if images and role != "user":
        raise bad_request(f"Invalid '{where}': only user messages may contain images.", param=where)
    return ChatMessage(role=role, content=text, images=images, origin=where)  # type: ignore[arg-type]


def _content(content: Any, where: str, model: str) -> tuple[str, tuple[str, ...]]:
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise bad_request(
            f"Invalid '{where}.content': expected a string or an array of content parts.",
            param=f"{where}.content",
            code="invalid_type",
        )
    texts, images = [], []
    for j, part in enumerate(content):
        param = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
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
    return "\n".join(texts), tuple(images)


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
    head = (ChatMessage(role="system", content="\n\n".join(system_texts)),) if system_texts else ()
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
