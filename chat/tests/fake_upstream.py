"""A fake OpenAI-compatible upstream: a real HTTP server on 127.0.0.1 replaying a stream
recorded from api.openai.com (chat/tests/fixtures/openai-streams), with failure modes chosen
by the URL's first path segment:

  /ok/v1/...        the recorded stream (usage included)
  /delay50/v1/...   the same as /ok/, 50 ms later (a model's think time: bench/response_cache.py)
  /nousage/v1/...   the same without its usage chunk
  /fail500/v1/...   HTTP 500            /busy429/v1/...  HTTP 429 with Retry-After
  /bad400/v1/...    HTTP 400 with an OpenAI error body
  /slow/v1/...      headers, then silence for 30 s before the stream (first-token timeout)
  /prefill/v1/...   headers, then 2.5 s of silence, then the stream (keep-alive pings)
  /drop/v1/...      a few content chunks, then the connection is cut
  /stall/v1/...     a content chunk every 0.2 s for 60 s (for disconnect tests)
  /tools/v1/...     the recorded stream of two parallel tool calls (chat-stream-12.sse)
  …/embeddings      OpenAI's documented embeddings answer: a deterministic 8-dimension
                    vector per input (float or base64), one usage token per word;
                    …:batchEmbedContents the same vectors in Gemini's shape
  /agent/v1/...     a coding agent's model: asked with a shell-like function tool and no
                    tool result yet, it calls that tool once to run AGENT_COMMAND (the
                    recorded tool-call chunks, name and arguments replaced); given the
                    result, it answers "Done: <the result>" (the recorded text chunks' shape)
  /prompt/v1/completions  the recorded text as `text_completion` chunks (prompt-only)
  /anthropic/v1/messages  the same text (or, when the request has tools, one tool_use
                    block) as Anthropic Messages SSE events; /anthropic529/… answers 529
  /gemini/v1beta/models/{m}:streamGenerateContent?alt=sse  the same text (or one
                    functionCall) as Gemini chunks; /gemini503/… answers 503
  GET …/models and …/health answer 200, except under /probefail/ (503).
  /ok/ and /tools/ answer a request without "stream": true with the chat.completion JSON
  their recorded stream adds up to (as OpenAI answers); for such a request
  /badjson/v1/...   answers 200 application/json that is not JSON
  /cutjson/v1/...   announces the whole answer's length, sends half of it and closes
  /slowjson/v1/...  answers the whole answer after 3 s
  (the other modes stream whatever the request asked for, as some servers do).
The Anthropic and Gemini streams follow the event formats in those providers' API
references (no recording of them exists here); the OpenAI ones are real recordings.
It records every request (path, headers, JSON body) and every client disconnect.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STREAMS = Path(__file__).resolve().parent / "fixtures" / "openai-streams"
RECORDING = STREAMS / "chat-stream-11.sse"
TOOL_RECORDING = STREAMS / "chat-stream-12.sse"  # two parallel tool calls


def recorded_chunks(recording: Path = RECORDING) -> list[dict[str, Any]]:
    lines = [line[6:] for line in recording.read_text().split("\n") if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


def recorded_pieces() -> list[str]:
    return [
        c["choices"][0]["delta"]["content"]
        for c in recorded_chunks()
        if c["choices"] and c["choices"][0]["delta"].get("content")
    ]


def recorded_text() -> str:
    return "".join((c["choices"][0]["delta"].get("content") or "") for c in recorded_chunks() if c["choices"])


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # many connections at once (the bench's idle streams)
    daemon_threads = True


class FakeUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.probes: list[str] = []
        self.disconnects: list[tuple[str, float]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once, as from a real server

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # /models and /health probes
                owner.probes.append(self.path)
                if self.path.startswith("/probefail/"):
                    return self._json(503, {"error": {"message": "loading"}})
                self._json(200, {"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                mode = self.path.strip("/").split("/")[0]
                owner.requests.append({"mode": mode, "path": self.path, "headers": dict(self.headers), "body": body})
                try:
                    owner.serve(self, mode, body)
                except (BrokenPipeError, ConnectionResetError):
                    owner.disconnects.append((mode, time.monotonic()))

            def _json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {
                    "Content-Type": "application/json",
                    "Content-Length": str(len(data)),
                    **(extra or {}),
                }.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, handler: Any, mode: str, body: dict[str, Any]) -> None:
        if mode == "delay50":
            time.sleep(0.05)
            mode = "ok"
        error = {"error": {"message": "bad things", "type": "invalid_request_error", "code": None, "param": None}}
        if mode == "fail500":
            return handler._json(500, {"error": {"message": "upstream exploded"}})
        if mode == "busy429":
            return handler._json(429, {"error": {"message": "slow down"}}, {"Retry-After": "7"})
        if mode == "bad400":
            return handler._json(400, error)
        if mode == "anthropic529":
            return handler._json(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        if mode == "gemini503":
            return handler._json(503, {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
        if handler.path.endswith("/embeddings"):
            return handler._json(200, embeddings_body(body))
        if handler.path.endswith(":batchEmbedContents"):  # Gemini's documented answer
            texts = [r["content"]["parts"][0]["text"] for r in body.get("requests") or []]
            return handler._json(200, {"embeddings": [{"values": fake_vector(text)} for text in texts]})
        if mode in ("anthropic", "gemini"):
            return self._provider(handler, mode, body)
        if mode in ("ok", "tools", "slowjson", "cutjson") and not body.get("stream"):
            # a plain chat.completion, as OpenAI answers
            answer = collected(recorded_chunks(TOOL_RECORDING if mode == "tools" else RECORDING))
            if mode == "slowjson":
                time.sleep(3)
            if mode != "cutjson":
                return handler._json(200, answer)
            data = json.dumps(answer).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.connection.shutdown(2)
            return None
        if mode == "badjson" and not body.get("stream"):
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", "12")
            handler.end_headers()
            handler.wfile.write(b'{"choices": ')
            return None
        _start_stream(handler)
        chunks = recorded_chunks(TOOL_RECORDING if mode == "tools" else RECORDING)
        if mode == "agent":
            chunks = agent_chunks(body)
        if mode == "prompt":
            chunks = [
                {
                    "id": "cmpl-1",
                    "object": "text_completion",
                    "created": 1,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}],
                }
                for piece in recorded_pieces()
            ]
            chunks[-1]["choices"][0]["finish_reason"] = "stop"
        if mode == "slow":
            time.sleep(30)
        if mode == "prefill":  # a long prompt being read: the first token comes after 2.5 s
            time.sleep(2.5)
        if mode == "nousage":
            chunks = [c for c in chunks if not c.get("usage")]
        if mode == "absurd":  # an upstream (or a compromised agent) that reports nonsense usage
            absurd = {"prompt_tokens": -1_000_000, "completion_tokens": 10**12, "total_tokens": 0}
            chunks = [dict(c, usage=absurd) if c.get("usage") else c for c in chunks]
        if mode == "stall":
            chunks = chunks[:1] + [dict(chunks[1], choices=[{"index": 0, "delta": {"content": "."}}])] * 300
        for i, chunk in enumerate(chunks):
            _send(handler, b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if mode == "drop" and i == 5:
                # Mid-stream, as a real cut is: the text has reached the gateway first (a cut at
                # once can land in the same read as the text, and look like a failed start).
                time.sleep(0.3)
                handler.connection.shutdown(2)
                return
            if mode == "stall":
                time.sleep(0.2)
        _send(handler, b"data: [DONE]\n\n")
        _send(handler, b"")  # the last chunk: the connection stays open for the next request

    def _provider(self, handler: Any, mode: str, body: dict[str, Any]) -> None:
        _start_stream(handler)
        tools = body.get("tools")
        events = anthropic_events(tools) if mode == "anthropic" else gemini_events(tools)
        for event in events:
            _send(handler, event)
        _send(handler, b"")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fake_vector(text: str) -> list[float]:
    """A deterministic 8-dimension unit vector for a text (the fake's model)."""
    digest = hashlib.sha256(text.encode()).digest()
    values = [b - 127.5 for b in digest[:8]]
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


def embeddings_body(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's /embeddings answer, in the documented shape (CreateEmbeddingResponse); usage
    counts one token per word."""
    inputs = body.get("input")
    items = [inputs] if isinstance(inputs, str) else list(inputs or [])
    texts = [item if isinstance(item, str) else " ".join(map(str, item)) for item in items]
    data = []
    for i, text in enumerate(texts):
        vector = fake_vector(text)
        if body.get("encoding_format") == "base64":
            encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        else:
            encoded = vector
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    tokens = sum(len(text.split()) for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


AGENT_COMMAND = "echo ghost-was-here > proof.txt && cat proof.txt"


def _shell_arguments(tool: dict[str, Any]) -> str | None:
    """Arguments that run AGENT_COMMAND through this function tool, if it takes a command."""
    properties = ((tool.get("function") or {}).get("parameters") or {}).get("properties") or {}
    for name in ("command", "cmd"):
        kind = (properties.get(name) or {}).get("type")
        if kind == "array":
            return json.dumps({name: ["bash", "-lc", AGENT_COMMAND]})
        if kind == "string":
            return json.dumps({name: AGENT_COMMAND})
    return None


def agent_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """One turn of a scripted coding agent, as chat.completion.chunk objects shaped like the
    recordings: a call of the request's shell tool, or — once its result is in — the answer."""
    messages = body.get("messages") or []
    results = [m for m in messages if m.get("role") == "tool"]
    shell = next(
        ((t["function"]["name"], a) for t in body.get("tools") or [] if (a := _shell_arguments(t)) is not None), None
    )
    text_chunks = recorded_chunks(RECORDING)
    if results or shell is None:
        output = results[-1].get("content") if results else "no shell tool was offered"
        answer = f"Done: {output if isinstance(output, str) else json.dumps(output)}"
        head, tail = text_chunks[0], text_chunks[-1]
        middle = dict(text_chunks[1], choices=[{"index": 0, "delta": {"content": answer}, "finish_reason": None}])
        finish = dict(text_chunks[1], choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
        return [head, middle, finish, tail]
    name, arguments = shell
    calls = recorded_chunks(TOOL_RECORDING)
    first = next(c for c in calls if c["choices"] and c["choices"][0]["delta"].get("tool_calls"))
    call = dict(first["choices"][0]["delta"]["tool_calls"][0], index=0)
    call["function"] = {"name": name, "arguments": ""}
    opening = dict(first, choices=[{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}}])
    argument = {"index": 0, "function": {"arguments": arguments}}
    piece = dict(first, choices=[{"index": 0, "delta": {"tool_calls": [argument]}, "finish_reason": None}])
    finish = dict(first, choices=[{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
    usage = next(c for c in calls if c.get("usage"))
    return [opening, piece, finish, usage]


def _start_stream(handler: Any) -> None:
    """SSE over chunked transfer encoding on a keep-alive connection, as real servers send it."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()


def _send(handler: Any, data: bytes) -> None:
    handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    handler.wfile.flush()


def collected(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streaming body the recorded stream adds up to (one choice: its text, or its
    tool calls with their argument pieces joined)."""
    first = chunks[0]
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    usage = next((c["usage"] for c in chunks if c.get("usage")), None)
    calls: dict[int, dict[str, Any]] = {}
    finish = "stop"
    for chunk in chunks:
        for choice in chunk["choices"]:
            finish = choice.get("finish_reason") or finish
            for call in choice["delta"].get("tool_calls") or []:
                slot = calls.setdefault(
                    call["index"], {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                slot["id"] = call.get("id") or slot["id"]
                slot["function"]["name"] += (call.get("function") or {}).get("name") or ""
                slot["function"]["arguments"] += (call.get("function") or {}).get("arguments") or ""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if calls:
        message.update(content=text or None, tool_calls=[calls[number] for number in sorted(calls)])
    return {
        "id": first["id"],
        "object": "chat.completion",
        "created": first["created"],
        "model": first["model"],
        "system_fingerprint": first.get("system_fingerprint"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage,
    }


def _anthropic(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_events(tools: Any) -> list[bytes]:
    """A Messages stream: the recorded text in one text block, or (with tools) a sentence and
    a tool_use block calling the first tool with {"city": "Paris"} in two JSON pieces."""
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "claude-fake",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 25, "output_tokens": 1},
    }
    out = [
        _anthropic("message_start", {"type": "message_start", "message": message}),
        _anthropic(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        _anthropic("ping", {"type": "ping"}),
    ]
    pieces = ["Let me check."] if tools else recorded_pieces()
    for piece in pieces:
        out.append(
            _anthropic(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
        )
    out.append(_anthropic("content_block_stop", {"type": "content_block_stop", "index": 0}))
    if tools:
        block = {"type": "tool_use", "id": "toolu_fake1", "name": tools[0]["name"], "input": {}}
        out.append(
            _anthropic("content_block_start", {"type": "content_block_start", "index": 1, "content_block": block})
        )
        for piece in ('{"city": ', '"Paris"}'):
            out.append(
                _anthropic(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 1,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
            )
        out.append(_anthropic("content_block_stop", {"type": "content_block_stop", "index": 1}))
    reason = "tool_use" if tools else "end_turn"
    out.append(
        _anthropic(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": {"output_tokens": 17},
            },
        )
    )
    out.append(_anthropic("message_stop", {"type": "message_stop"}))
    return out


def gemini_events(tools: Any) -> list[bytes]:
    """streamGenerateContent?alt=sse: the recorded text a piece per chunk, or (with tools) one
    functionCall of the first declared function; usage in the last chunk."""

    def chunk(parts: list[dict[str, Any]] | None, finish: str | None = None, usage: bool = False) -> bytes:
        candidate: dict[str, Any] = {"index": 0}
        if parts is not None:
            candidate["content"] = {"role": "model", "parts": parts}
        if finish:
            candidate["finishReason"] = finish
        data: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-fake", "responseId": "resp-fake"}
        if usage:
            data["usageMetadata"] = {"promptTokenCount": 31, "candidatesTokenCount": 19, "totalTokenCount": 50}
        return b"data: " + json.dumps(data).encode() + b"\r\n\r\n"

    if tools:
        name = tools[0]["functionDeclarations"][0]["name"]
        return [chunk([{"functionCall": {"name": name, "args": {"city": "Paris"}}}], "STOP", usage=True)]
    pieces = recorded_pieces()
    return [chunk([{"text": piece}]) for piece in pieces[:-1]] + [chunk([{"text": pieces[-1]}], "STOP", usage=True)]
