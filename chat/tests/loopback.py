"""A real HTTP server on 127.0.0.1 for what lives outside this machine (a provider's API, a
trace collector): each POST is answered by a function of its path, headers and raw body;
a GET (a model list, a health probe) by an empty model list."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, str, bytes]  # status, content type, body
Answerer = Callable[[str, Mapping[str, str], bytes], Answer]


class Loopback:
    def __init__(self, answer: Answerer) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._send((200, "application/json", b'{"data": []}'))

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                self._send(answer(self.path, self.headers, raw))

            def _send(self, answered: Answer) -> None:
                status, content_type, data = answered
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def openai_stream(model: str, delta: dict[str, Any], finish: str, usage: dict[str, Any], number: int = 1) -> Answer:
    """One choice as OpenAI streams it: the delta, the finish, the usage chunk, [DONE]."""
    chunk = {"id": f"chatcmpl-{number}", "created": 1, "model": model, "object": "chat.completion.chunk"}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": delta}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
        {**chunk, "choices": [], "usage": usage},
    ]
    data = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    return 200, "text/event-stream", data
