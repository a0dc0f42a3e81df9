"""A fake OpenAI-compatible upstream: a real HTTP server on 127.0.0.1 replaying a stream
recorded from api.openai.com (shared/reference/openai-streams), with failure modes chosen
by the URL's first path segment:

  /ok/v1/...        the recorded stream (usage included)
  /nousage/v1/...   the same without its usage chunk
  /fail500/v1/...   HTTP 500            /busy429/v1/...  HTTP 429 with Retry-After
  /bad400/v1/...    HTTP 400 with an OpenAI error body
  /slow/v1/...      headers, then silence for 30 s before the stream (first-token timeout)
  /drop/v1/...      a few content chunks, then the connection is cut
  /stall/v1/...     a content chunk every 0.2 s for 60 s (for disconnect tests)
It records every request (path, headers, JSON body) and every client disconnect.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDING = Path(__file__).resolve().parents[3] / "shared" / "reference" / "openai-streams" / "chat-stream-11.sse"


def recorded_chunks() -> list[dict[str, Any]]:
    lines = [line[6:] for line in RECORDING.read_text().split("\n") if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


def recorded_text() -> str:
    return "".join((c["choices"][0]["delta"].get("content") or "") for c in recorded_chunks() if c["choices"])


class FakeUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.disconnects: list[tuple[str, float]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # /models probes
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, handler: Any, mode: str, body: dict[str, Any]) -> None:
        error = {"error": {"message": "bad things", "type": "invalid_request_error", "code": None, "param": None}}
        if mode == "fail500":
            return handler._json(500, {"error": {"message": "upstream exploded"}})
        if mode == "busy429":
            return handler._json(429, {"error": {"message": "slow down"}}, {"Retry-After": "7"})
        if mode == "bad400":
            return handler._json(400, error)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        chunks = recorded_chunks()
        if mode == "slow":
            time.sleep(30)
        if mode == "nousage":
            chunks = [c for c in chunks if not c.get("usage")]
        if mode == "stall":
            chunks = chunks[:1] + [dict(chunks[1], choices=[{"index": 0, "delta": {"content": "."}}])] * 300
        for i, chunk in enumerate(chunks):
            handler.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            handler.wfile.flush()
            if mode == "drop" and i == 5:
                handler.connection.shutdown(2)
                return
            if mode == "stall":
                time.sleep(0.2)
        handler.wfile.write(b"data: [DONE]\n\n")
        handler.wfile.flush()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
