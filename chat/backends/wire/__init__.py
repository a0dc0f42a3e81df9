"""Upstream wire formats: how a `GenerationRequest` is sent to an OpenAI-compatible,
Anthropic, Gemini or prompt-only server, and how its SSE answer becomes our events.
`upstream.RoutedModel` does the transport, timeouts and failover; a wire only translates."""

from __future__ import annotations

from .anthropic import AnthropicWire
from .base import Translator, Wire
from .gemini import GeminiWire
from .openai import OpenAIWire
from .prompt import PromptWire

WIRES: dict[str, Wire] = {
    "openai": OpenAIWire(),
    "anthropic": AnthropicWire(),
    "gemini": GeminiWire(),
    "prompt": PromptWire(),
}

__all__ = ["WIRES", "Translator", "Wire"]
