"""Prompt-only upstreams: servers that take one string (an OpenAI-style `/completions`
endpoint — llama.cpp server, vLLM, TGI's OpenAI layer — serving a base model or a
"claude-2-web"-style bridge). The conversation is serialized into one prompt, the way
OhMyGPT's claude-2-web models did:

    <system text>

    Human: <user turn>

    Assistant: <assistant turn>

    Human: <user turn>

    Assistant:

System messages come first as a plain paragraph; every other turn is a blank line, then
"Human: " (user and tool turns; a tool result reads "Human: [Result of <function>]
<content>") or "Assistant: "; the prompt ends with "\n\nAssistant:" for the model to
continue, and "\n\nHuman:" is added to the stop sequences so it never writes the user's
next turn. Image parts have become text before this (the model cannot see). Function
calling is not offered on these models (a clear 400).

What a client wrote can never forge a turn: in every message's text, the turn markers
("\n\nHuman:", "\n\nAssistant:") and special-token spellings (`<|…|>`, `<s>`, `</s>`) get
a zero-width space before their last character, so neither the upstream's tokenizer (which
may parse special tokens in a prompt, as llama.cpp's server does) nor the serialized form
sees a marker the client typed.
"""

from __future__ import annotations

import re
from typing import Any

from chat.backends.base import ChatMessage, GenerationRequest

from .base import Outgoing, Translator, error_message
from .openai import OpenAITranslator, sampling_body

HUMAN = "\n\nHuman: "
ASSISTANT = "\n\nAssistant: "
STOP = "\n\nHuman:"
MARKERS = re.compile(r"<\||</?s>|\n\n(?:Human|Assistant):")
SPECIAL = re.compile(r"<\||</?s>")


def plain(text: str, markers: re.Pattern[str] = MARKERS) -> str:
    """`text` with every marker broken by a zero-width space before its last character."""
    return markers.sub(lambda m: m.group(0)[:-1] + "\u200b" + m.group(0)[-1], text)


def serialize(messages: tuple[ChatMessage, ...]) -> str:
    """The documented one-string form of a conversation (see the module docstring)."""
    system = "\n\n".join(plain(m.content.strip()) for m in messages if m.role == "system" and m.content.strip())
    turns = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "assistant":
            turns.append(ASSISTANT + plain(message.content.strip()))
        elif message.role == "tool":
            turns.append(f"{HUMAN}[Result of {plain(message.name or 'tool')}] {plain(message.content.strip())}")
        else:
            turns.append(HUMAN + plain(message.content.strip()))
    return system + "".join(turns) + ASSISTANT.rstrip(" ")


class PromptWire:
    probe_path = "/models"

    def headers(self, api_key: str, options: dict[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def prepare(self, model: str, request: GenerationRequest) -> Outgoing:
        body: dict[str, Any] = sampling_body(model, request)
        body["n"] = request.n
        if request.is_chat:
            body["prompt"] = serialize(request.messages)
            body["stop"] = list(dict.fromkeys([*request.sampling.stop, STOP]))
        else:
            # A raw prompt is the client's own Human/Assistant text: only special tokens break.
            body["prompt"] = [plain(p, SPECIAL) if isinstance(p, str) else list(p) for p in request.prompts]
        return Outgoing("/completions", body)

    def translator(self, request: GenerationRequest, name: str) -> Translator:
        return PromptTranslator(request, name)

    def error_message(self, raw: bytes) -> str:
        return error_message(raw)


class PromptTranslator(OpenAITranslator):
    """Text completion chunks (`choices[].text`), for a chat request as well."""

    def feed(self, event: str, data: Any) -> Any:
        if isinstance(data, dict):
            for choice in data.get("choices") or []:
                if "text" in choice and "delta" not in choice:
                    choice["delta"] = {"content": choice.get("text")}
        return super().feed(event, data)
