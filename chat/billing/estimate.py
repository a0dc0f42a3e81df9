"""Upper bounds on the tokens of a request, for admission before any model is contacted.

Every tokenizer GhostGPT meets (byte-level BPE for OpenAI, Llama 3, Qwen, SmolLM; SentencePiece
with byte fallback for Gemini, Llama 2, Mistral) makes a token of at least one UTF-8 byte of
its text, so the byte length of a text bounds its token count from above. Around the text
come the chat template's own tokens (role markers, separators, the function-calling
preamble): a fixed allowance per message and per tool covers them. An image costs what the
target API bills for its largest image (`ModelInfo.image_tokens`).

These bounds are what GhostGPT reserves (money and TPM) before it calls anything, what it
caps a model's reported usage at, and what it bills when a model reports no usage at all.
"""

from __future__ import annotations

import json

from chat.backends.base import GenerationRequest, ToolSpec

REQUEST_OVERHEAD = 16  # BOS, the assistant turn's opening, the tool-calling preamble
MESSAGE_OVERHEAD = 8  # role markers and separators of one message
TOOL_OVERHEAD = 16  # the template's wrapping of one function declaration
CALL_OVERHEAD = 8  # the wrapping of one function call in an assistant turn


def text_bound(text: str | None) -> int:
    """At most this many tokens: one per UTF-8 byte."""
    return len(text.encode("utf-8", "surrogatepass")) if text else 0


def tool_bound(tool: ToolSpec) -> int:
    schema = json.dumps(tool.parameters or {}, ensure_ascii=False, separators=(",", ":"))
    return TOOL_OVERHEAD + text_bound(tool.name) + text_bound(tool.description) + text_bound(schema)


def prompt_bound(request: GenerationRequest, *, image_tokens: int) -> int:
    """The most prompt tokens this request can cost: every message's text, its function
    calls and results, the tool schemas, and images at `image_tokens` each."""
    total = REQUEST_OVERHEAD + sum(tool_bound(tool) for tool in request.tools)
    for message in request.messages:
        total += MESSAGE_OVERHEAD + text_bound(message.content) + text_bound(message.name)
        total += text_bound(message.tool_call_id) + len(message.images) * image_tokens
        for call in message.tool_calls:
            total += CALL_OVERHEAD + text_bound(call.id) + text_bound(call.name) + text_bound(call.arguments)
    for prompt in request.prompts:
        total += text_bound(prompt) if isinstance(prompt, str) else len(prompt)
    return total


def completion_bound(request: GenerationRequest) -> int:
    """`max_tokens` for every choice: no backend may generate more."""
    return request.sampling.max_tokens * request.choice_count
