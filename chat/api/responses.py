"""OpenAI's Responses API on our side: `POST /v1/responses` (and the stored responses'
GET / DELETE / input_items), for Codex CLI, the OpenAI Agents SDK and `client.responses`.

The request's items are translated into the Chat Completions shape and go through the
same path as /v1/chat/completions (auth, limits, billing, the parameter policy, the
backend); only the encoder differs. Streams follow OpenAI's event order exactly, each
event with its `sequence_number`: `response.created`, `response.in_progress`, per output
item `response.output_item.added` → (`response.content_part.added`,
`response.output_text.delta`…, `response.output_text.done`, `response.content_part.done`)
or (`response.function_call_arguments.delta`…, `.done`) → `response.output_item.done`, then
one of `response.completed` / `response.incomplete` / `response.failed`. Codex drops text
that arrives before its item's `added` event and waits for every item's `done`: the order
is the contract.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from .errors import bad_request
from .fields import string
from .params import ParsedRequest, parse_chat

INPUT_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
IGNORED_ITEMS = {"reasoning"}  # a model's reasoning from an earlier turn: nothing to replay here


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


@dataclass
class ResponsesRequest:
    """A parsed Responses request: what to generate, and what the response echoes."""

    parsed: ParsedRequest
    items: list[dict[str, Any]]  # this request's input, as items with ids (stored for input_items)
    echo: dict[str, Any]
    store: bool
    previous_response_id: str | None
    dropped_tools: list[str] = field(default_factory=list)


# --- request ------------------------------------------------------------------------------


def parse_responses(
    body: dict[str, Any], policy: dict[str, Any], history: list[dict[str, Any]] | None = None
) -> ResponsesRequest:
    """A Responses request → the Chat Completions request it means, parsed by the same policy.
    `history`: the items of the conversation so far (from `previous_response_id`)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model: Field required (a model id string).", param="model")
    items = normalize_input(body.get("input"))
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad_request("instructions: expected a string.", param="instructions")
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    messages += items_to_messages([*(history or []), *items])
    if not messages:
        raise bad_request("input: expected a string or a non-empty list of input items.", param="input")
    tools, dropped = _tools(body.get("tools"))
    chat: dict[str, Any] = {"model": model, "messages": messages, "stream": _flag(body, "stream", False)}
    if tools:
        chat["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"), {string(t["function"]["name"]) or "" for t in tools})
        if choice is not None:
            chat["tool_choice"] = choice
    elif body.get("tool_choice") == "required":
        raise bad_request("tool_choice: 'required' needs at least one function tool.", param="tool_choice")
    for ours, theirs in (
        ("max_tokens", "max_output_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("user", "user"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("prompt_cache_key", "prompt_cache_key"),
    ):
        if body.get(theirs) is not None:
            chat[ours] = body[theirs]
    response_format = _text_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and len(metadata) <= 16 and all(isinstance(v, str) for v in metadata.values())
    ):
        raise bad_request("metadata: up to 16 string values.", param="metadata")
    parsed = parse_chat(chat, policy)
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise bad_request("previous_response_id: expected a string.", param="previous_response_id")
    generation = parsed.generation
    echo = {
        "instructions": instructions,
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": metadata or {},
        "parallel_tool_calls": generation.parallel_tool_calls is not False,
        "previous_response_id": previous,
        "temperature": generation.sampling.temperature,
        "top_p": generation.sampling.top_p,
        "text": {"format": response_format or {"type": "text"}},
        "tool_choice": _echo_choice(body.get("tool_choice")),
        "tools": [_echo_tool(t) for t in tools],
        **({"user": body["user"]} if isinstance(body.get("user"), str) else {}),
        "store": _flag(body, "store", True),
    }
    return ResponsesRequest(
        parsed=parsed,
        items=items,
        echo=echo,
        store=echo["store"],
        previous_response_id=previous,
        dropped_tools=dropped,
    )


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"{name}: expected a boolean.", param=name)
    return value


def normalize_input(value: Any) -> list[dict[str, Any]]:
    """`input` as a list of items, each with its `type` and an `id` (for input_items)."""
    if isinstance(value, str):
        return [
            {
                "id": new_id("msg"),
                "type": "message",
                "role": "user",
                "content": [_text_part("input", value)],
                "status": "completed",
            }
        ]
    if not isinstance(value, list):
        raise bad_request("input: expected a string or a list of input items.", param="input")
    items = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise bad_request(f"{where}: expected an object.", param=where)
        kind = string(item.get("type")) if "type" in item else ("message" if "role" in item else None)
        if kind == "message":
            items.append(_message_item(item, where))
        elif kind == "function_call":
            for name in ("call_id", "name", "arguments"):
                if not isinstance(item.get(name), str):
                    raise bad_request(f"{where}.{name}: expected a string.", param=f"{where}.{name}")
            items.append(
                {
                    "id": str(item.get("id") or new_id("fc")),
                    "type": "function_call",
                    "call_id": item["call_id"],
                    "name": item["name"],
                    "arguments": item["arguments"],
                    "status": "completed",
                }
            )
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise bad_request(f"{where}.call_id: expected a string.", param=f"{where}.call_id")
            items.append(
                {
                    "id": str(item.get("id") or new_id("fco")),
                    "type": "function_call_output",
                    "call_id": item["call_id"],
                    "output": _output_text(item.get("output"), f"{where}.output"),
                    "status": "completed",
                }
            )
        elif kind in IGNORED_ITEMS:
            continue
        else:
            raise bad_request(
                f"{where}.type: input items of type {kind!r} are not supported here "
                "(message, function_call, function_call_output and reasoning are).",
                param=f"{where}.type",
            )
    return items


def _text_part(direction: str, text: str) -> dict[str, Any]:
    if direction == "output":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "input_text", "text": text}


def _message_item(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = string(item.get("role"))
    if role not in INPUT_ROLES:
        raise bad_request(f"{where}.role: expected user, assistant, system or developer.", param=f"{where}.role")
    content = item.get("content")
    direction = "output" if role == "assistant" else "input"
    if isinstance(content, str):
        parts = [_text_part(direction, content)]
    elif isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("input_text", "output_text", "text", "refusal"):
                text = part.get("text") if kind != "refusal" else part.get("refusal")
                if not isinstance(text, str):
                    raise bad_request(f"{where}.content[{j}].text: expected a string.", param=f"{where}.content")
                parts.append(_text_part(direction, text))
            elif kind == "input_image":
                url = part.get("image_url")
                if not isinstance(url, str) or not url:
                    raise bad_request(
                        f"{where}.content[{j}]: input_image needs an image_url (a URL or a data: URL); "
                        "file ids are not supported here.",
                        param=f"{where}.content",
                    )
                parts.append({"type": "input_image", "image_url": url, "detail": part.get("detail") or "auto"})
            else:
                raise bad_request(
                    f"{where}.content[{j}]: content parts of type {kind!r} are not supported here.",
                    param=f"{where}.content",
                )
    else:
        raise bad_request(f"{where}.content: expected a string or a list of content parts.", param=f"{where}.content")
    return {
        "id": str(item.get("id") or new_id("msg")),
        "type": "message",
        "role": role,
        "content": parts,
        "status": "completed",
    }


def _output_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(str(p.get("text", "")) for p in value if isinstance(p, dict) and "text" in p)
    raise bad_request(f"{where}: expected a string or a list of text parts.", param=where)


def items_to_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items (input, and earlier outputs) → Chat Completions messages: consecutive
    `function_call` items become one assistant message's `tool_calls`; each
    `function_call_output` a `tool` message."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            parts = item["content"]
            if all(p["type"] != "input_image" for p in parts):
                content: Any = "".join(p["text"] for p in parts)
            else:
                content = [
                    {"type": "image_url", "image_url": {"url": p["image_url"]}}
                    if p["type"] == "input_image"
                    else {"type": "text", "text": p["text"]}
                    for p in parts
                ]
            messages.append({"role": INPUT_ROLES[item["role"]], "content": content})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant" and isinstance(last["content"], str):
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return messages


def _tools(value: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Function tools in the Chat Completions shape, and the built-in tools dropped (a
    deployment runs no web_search, file_search, computer…: dropping them keeps clients such
    as Codex talking instead of ending their session on a 400)."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise bad_request("tools: expected a list of tools.", param="tools")
    tools, dropped = [], []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise bad_request(f"tools[{i}]: expected a tool object with a type.", param=f"tools[{i}]")
        if tool["type"] != "function":
            dropped.append(tool["type"])
            continue
        function: dict[str, Any] = {"name": tool.get("name")}
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        if tool.get("parameters") is not None:
            function["parameters"] = tool["parameters"]
        if tool.get("strict") is not None:
            function["strict"] = tool["strict"]
        tools.append({"type": "function", "function": function})
    return tools, dropped


def _tool_choice(value: Any, names: set[str]) -> Any:
    if value is None or value in ("auto", "none", "required"):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        return {"type": "function", "function": {"name": value.get("name")}}
    if isinstance(value, dict) and value.get("type") == "allowed_tools":
        return value.get("mode") if value.get("mode") in ("auto", "required") else "auto"
    if isinstance(value, dict):
        return "auto"  # a built-in tool that was dropped: let the model choose among the rest
    raise bad_request("tool_choice: expected auto, none, required or a function.", param="tool_choice")


def _echo_choice(value: Any) -> Any:
    if value in ("auto", "none", "required") or (isinstance(value, dict) and value.get("type") == "function"):
        return value
    return "auto"


def _echo_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    return {
        "type": "function",
        "name": function["name"],
        "description": function.get("description"),
        "parameters": function.get("parameters"),
        "strict": function.get("strict", False),
    }


def _text_format(value: Any) -> dict[str, Any] | None:
    """`text.format` → Chat Completions' `response_format` (None for plain text)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request("text: expected an object.", param="text")
    form = value.get("format")
    if form is None or (isinstance(form, dict) and form.get("type") == "text"):
        return None
    if not isinstance(form, dict):
        raise bad_request("text.format: expected an object.", param="text.format")
    if form.get("type") == "json_object":
        return {"type": "json_object"}
    if form.get("type") == "json_schema":
        schema = {k: form[k] for k in ("name", "schema", "strict", "description") if k in form}
        return {"type": "json_schema", "json_schema": schema}
    raise bad_request("text.format.type: expected text, json_object or json_schema.", param="text.format")
