"""The agent side (`python manage.py run_agent`): connects out to GhostGPT's `/ws/agent`
with an agent token, heartbeats, and serves each job from an OpenAI-compatible upstream
(streamed with httpx) or from the embedded model. Reconnects with backoff when the
connection drops; a `cancel` stops the job's upstream request at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets

from chat.backends.base import Backend, ChatMessage, Finish, GenerationRequest, SamplingParams, TextDelta, Usage

logger = logging.getLogger(__name__)
MAX_BACKOFF = 30.0

Piece = tuple[str, Any]  # ("text", str) | ("done", (finish_reason, usage dict | None))


class UpstreamSource:
    """Jobs served by an OpenAI-compatible server (`/chat/completions`, streamed)."""

    def __init__(self, base_url: str, api_key: str = "", model: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.model = model
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(300, connect=10), trust_env=False)

    async def pieces(self, request: dict[str, Any]) -> AsyncIterator[Piece]:
        body = {
            **{k: v for k, v in request.items() if v not in (None, [])},
            "model": self.model or request["model"],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        reason, usage = "stop", None
        async with self.client.stream(
            "POST", self.base_url + "/chat/completions", json=body, headers=headers
        ) as response:
            if response.status_code >= 400:
                raise RuntimeError(f"the upstream answered HTTP {response.status_code}")
            async for line in response.aiter_lines():
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                chunk = json.loads(line[5:])
                for choice in chunk.get("choices") or []:
                    if text := (choice.get("delta") or {}).get("content"):
                        yield "text", text
                    reason = choice.get("finish_reason") or reason
                usage = chunk.get("usage") or usage
        yield "done", (reason, usage)


class BackendSource:
    """Jobs served by a Backend in this process (the embedded model)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def pieces(self, request: dict[str, Any]) -> AsyncIterator[Piece]:
        generation = GenerationRequest(
            model=request["model"],
            messages=tuple(ChatMessage(role=m["role"], content=m["content"]) for m in request["messages"]),
            sampling=SamplingParams(
                max_tokens=int(request["max_tokens"]),
                temperature=float(request.get("temperature", 1.0)),
                top_p=float(request.get("top_p", 1.0)),
                stop=tuple(request.get("stop") or ()),
                seed=request.get("seed"),
            ),
        )
        reason, usage = "stop", None
        async for event in self.backend.stream(generation):
            if isinstance(event, TextDelta):
                yield "text", event.text
            elif isinstance(event, Finish):
                reason = event.reason
            elif isinstance(event, Usage):
                usage = {"prompt_tokens": event.prompt_tokens, "completion_tokens": event.completion_tokens}
        yield "done", (reason, usage)


class Agent:
    def __init__(
        self,
        server: str,
        token: str,
        source: Any,
        *,
        name: str = "",
        models: list[str] | None = None,
        parallel: int = 1,
    ) -> None:
        self.url = server.rstrip("/")
        if self.url.startswith("http"):
            self.url = "ws" + self.url[4:]
        if not self.url.endswith("/ws/agent"):
            self.url += "/ws/agent"
        self.token = token
        self.source = source
        self.name = name
        self.models = models or []
        self.parallel = parallel
        self.jobs: dict[str, asyncio.Task[None]] = {}
        self._send_lock = asyncio.Lock()

    async def run_forever(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self.run_once()
                backoff = 1.0
            except (OSError, websockets.WebSocketException) as exc:
                logger.warning("agent connection failed: %s; retrying in %.0fs", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def run_once(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with websockets.connect(self.url, additional_headers=headers, max_size=2**24) as ws:
            welcome = json.loads(await ws.recv())
            logger.info("connected to %s as agent %s", self.url, welcome.get("id"))
            await self._send(ws, {"type": "hello", "name": self.name, "models": self.models, "parallel": self.parallel})
            beat = asyncio.ensure_future(self._heartbeat(ws, float(welcome.get("heartbeat_seconds") or 10)))
            try:
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("type") == "job":
                        job = str(message["job"])
                        self.jobs[job] = asyncio.ensure_future(self._serve(ws, job, message["request"]))
                    elif message.get("type") == "cancel" and (task := self.jobs.pop(str(message["job"]), None)):
                        task.cancel()
            finally:
                beat.cancel()
                for task in self.jobs.values():
                    task.cancel()
                self.jobs.clear()

    async def _heartbeat(self, ws: Any, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await self._send(ws, {"type": "heartbeat"})

    async def _send(self, ws: Any, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await ws.send(json.dumps(message, ensure_ascii=False))

    async def _serve(self, ws: Any, job: str, request: dict[str, Any]) -> None:
        try:
            await self._send(ws, {"type": "accepted", "job": job})
            async for kind, value in self.source.pieces(request):
                if kind == "text":
                    await self._send(ws, {"type": "delta", "job": job, "text": value})
                else:
                    reason, usage = value
                    await self._send(ws, {"type": "done", "job": job, "finish_reason": reason, "usage": usage})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the job fails; the server may try another agent
            logger.warning("job %s failed: %s", job, exc)
            with contextlib.suppress(Exception):
                await self._send(ws, {"type": "error", "job": job, "message": str(exc)[:300], "retry": True})
        finally:
            self.jobs.pop(job, None)
