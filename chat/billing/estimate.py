"""Upper bounds on the tokens of a request, for admission before any model is contacted.

Every tokenizer GhostGPT meets (byte-level BPE for OpenAI, Llama 3, Qwen, SmolLM; SentencePiece
with byte fallback for Gemini, Llama 2, Mistral) makes a token of at least one UTF-8 byte of
its text, so the byte length of a text bounds its token count from above. Around the text
come the chat template's own tokens (role markers, separators, the function-calling
preamble): a fixed allowance per message and per tool covers them. An image costs what the
target API bills for its largest image (`ModelInfo.image_tokens`).

These bounds are what GhostGPT reserves (money and TPM) before it calls anything, what it
caps a model's reported usage at, and what it bills when a model reports no usage at all.

The floors go the other way: the fewest tokens a text can be, at FLOOR_BYTES_PER_TOKEN UTF-8
bytes a token (real tokenizers average 3-5 bytes a token on English, Russian, code and CJK
text; only long runs of one character merge further). A model's report below the floor of
its prompt or of the text it delivered is billed at the floor instead (an upstream or an
agent that reports `{0, 0}` after streaming an answer does not make it free).
"""

from __future__ import annotations

import json

from chat.backends.base import GenerationRequest, ToolSpec

REQUEST_OVERHEAD = 16  # BOS, the assistant turn's opening, the tool-calling preamble
MESSAGE_OVERHEAD = 8  # role markers and separators of one message
TOOL_OVERHEAD = 16  # the template's wrapping of one function declaration
CALL_OVERHEAD = 8  # the wrapping of one function call in an assistant turn
PROMPT_OVERHEAD = 4  # what a tokenizer wraps each prompt in: BOS; [CLS] … [SEP] for embeddings
FLOOR_BYTES_PER_TOKEN = 8


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
        total += PROMPT_OVERHEAD + (text_bound(prompt) if isinstance(prompt, str) else len(prompt))
    return total


def text_floor(text_bytes: int) -> int:
    """At least this many tokens for a text of `text_bytes` UTF-8 bytes."""
    return max(text_bytes, 0) // FLOOR_BYTES_PER_TOKEN


def prompt_floor(request: GenerationRequest) -> int:
    """The fewest prompt tokens this request can cost: its texts at the floor (token-id
    prompts are exact)."""
    texts = sum(text_bound(m.content) for m in request.messages)
    ids = 0
    for prompt in request.prompts:
        if isinstance(prompt, str):
            texts += text_bound(prompt)
        else:
            ids += len(prompt)
    return text_floor(texts) + ids


def completion_bound(request: GenerationRequest) -> int:
    """`max_tokens` for every choice: no backend may generate more."""
    return request.sampling.max_tokens * request.choice_count
