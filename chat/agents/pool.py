"""`AgentPool`: the Backend for the public model served by dial-in agents.

Each request goes to the least busy live agent over the channel layer (so an agent
connected to another GhostGPT process serves it too). Until the agent has sent text, a
failure — the agent disconnects, errors with `retry`, or says nothing within the
first-token timeout — moves the request to the next agent; after text, the stream ends
with an error event. A client that goes away cancels the job on the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

from channels.layers import get_channel_layer

from chat.backends.base import (
    Accepted,
    Capability,
    Event,
    Finish,
    GenerationRequest,
    InvalidPrompt,
    ModelInfo,
    ModelUnavailable,
    Readiness,
    TextDelta,
    Usage,
)
from chat.backends.wire.base import UpstreamFailed, UpstreamRejected, UpstreamTimeout, count, estimate_prompt_tokens
from chat.backends.wire.openai import usage_of
from chat.billing.estimate import text_bound
from chat.layers import ChannelReader

from . import services
from .selectors import agent_pick

logger = logging.getLogger(__name__)
REASONS = {"length": "length"}


class AgentFailed(UpstreamFailed):
    code = "agent_failed"


class AgentPool:
    def __init__(self, info: ModelInfo, *, first_token_timeout: float, read_timeout: float) -> None:
        self.info = info
        self.first_token_timeout = first_token_timeout
        self.read_timeout = read_timeout
        self.running = 0
        self.failovers = 0

    def models(self) -> list[ModelInfo]:
        return [self.info]

    def capabilities(self) -> frozenset[Capability]:
        return frozenset()  # text in, text out: images arrive as OCR text, tools are refused

    def readiness(self) -> tuple[Readiness, str]:
        return "ready", ""  # no agent connected is per request (503), not this server being down

    def stats(self) -> dict[str, object]:
        return {"running": self.running, "waiting": 0, "failovers": self.failovers}

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if not request.is_chat or request.n != 1:
            raise InvalidPrompt("Agents serve chat completions with n=1.", param="n" if request.is_chat else "prompt")
        self.running += 1
        tried: set[uuid.UUID] = set()
        accepted, last = False, None
        try:
            while True:
                agent = await agent_pick(exclude=tried)
                if agent is None:
                    raise last or ModelUnavailable(
                        f"No agent is connected for '{self.info.id}' right now; retry shortly.", retry_after=5
                    )
                tried.add(agent.pk)
                attempt = _attempt(agent.pk, agent.channel_name, request, self)
                sent = False
                try:
                    async for event in attempt:
                        if isinstance(event, Accepted):
                            if accepted:
                                continue
                            accepted = True
                        elif isinstance(event, TextDelta):
                            sent = True
                        yield event
                    return
                except UpstreamFailed as exc:
                    logger.warning("agent %s failed: %s", agent.pk, exc.message)
                    if sent:
                        raise
                    self.failovers += 1
                    last = exc
                finally:
                    await attempt.aclose()  # type: ignore[attr-defined]
        finally:
            self.running -= 1


def job_request(request: GenerationRequest) -> dict[str, Any]:
    sampling = request.sampling
    return {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "stop": list(sampling.stop),
        "seed": sampling.seed,
    }


def _count(value: object) -> int:
    """A token count from an agent: a non-negative int (the meter also caps it at what the
    request could produce)."""
    return count(value) if isinstance(value, int) else 0


async def _attempt(
    agent_id: uuid.UUID, channel: str, request: GenerationRequest, pool: AgentPool
) -> AsyncIterator[Event]:
    layer = get_channel_layer()
    reply = await layer.new_channel("agent-reply.")
    job = secrets.token_hex(12)
    finished, served, delivered = False, False, 0
    await services.agent_job_started(connection_id=agent_id)
    replies = ChannelReader(reply, what=f"agent job {job}")
    try:
        await layer.send(channel, {"type": "agent.job", "job": job, "reply": reply, "request": job_request(request)})
        timeout = pool.first_token_timeout
        while True:
            if (message := await replies.get(timeout)) is None:
                raise UpstreamTimeout(f"The agent said nothing for {timeout:.0f}s.")
            kind = message.get("type")
            if kind == "agent.accepted":
                prompt = message.get("prompt_tokens")
                yield Accepted(
                    prompt_tokens=_count(prompt) if isinstance(prompt, int) else estimate_prompt_tokens(request)
                )
            elif kind == "agent.delta" and isinstance(message.get("text"), str) and message["text"]:
                tokens = text_bound(message["text"])  # an upper bound; the agent's usage is clamped to it
                delivered += tokens
                timeout = pool.read_timeout
                yield TextDelta(index=0, text=message["text"], tokens=tokens)
            elif kind == "agent.done":
                finished = served = True
                yield Finish(index=0, reason=REASONS.get(str(message.get("finish_reason")), "stop"))  # type: ignore[arg-type]
                usage = message.get("usage") if isinstance(message.get("usage"), dict) else None
                if usage:
                    yield usage_of(usage)  # an agent reports in OpenAI's shape, details and all
                else:
                    yield Usage(estimate_prompt_tokens(request), delivered, estimated=True)
                return
            elif kind == "agent.error":
                finished = True
                text = str(message.get("message") or "the agent failed")[:500]
                if message.get("retry", True):
                    raise AgentFailed(f"The agent failed: {text}")
                raise UpstreamRejected(f"The agent refused the request: {text}")
    finally:
        replies.close()
        if not finished:  # the client went away (or we timed out): stop the agent's work
            with contextlib.suppress(Exception):
                await layer.send(channel, {"type": "agent.cancel", "job": job})
        await asyncio.shield(services.agent_job_ended(connection_id=agent_id, served=served))
