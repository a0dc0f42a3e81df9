"""The HTTP server GhostGPT runs under (`manage.py serve`, ghostgpt.server), driven over raw
sockets where a client library would hide what the server does: limits on the request head,
kept-alive and pipelined connections, and the graceful stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .fake_upstream import FakeUpstream
from .live import ROOT, LiveServer, wait_for

HEAD_SECONDS = 1.5


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = LiveServer(env={"GHOSTGPT_HTTP_HEAD_TIMEOUT_SECONDS": str(HEAD_SECONDS)}, wait_ready=False)
    yield live
    live.stop()


class Raw:
    """A raw client connection: what a client library would hide stays visible. Bytes read
    past one response are kept for the next (pipelined answers can share a read)."""

    def __init__(self, server: LiveServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.unread = b""

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_until(self, enough: Callable[[bytes], bool]) -> bytes:
        while not enough(self.unread):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {self.unread!r}")
            self.unread += chunk
        return self.unread

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """One HTTP/1.1 response with a Content-Length body."""
        head, _, _ = self._read_until(lambda data: b"\r\n\r\n" in data).partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        end = len(head) + 4 + int(headers.get("content-length", "0"))
        data = self._read_until(lambda data: len(data) >= end)
        self.unread = data[end:]
        return int(status_line.split()[1]), headers, data[len(head) + 4 : end]

    def closed(self) -> bool:
        """True once the server has closed the connection (all it sent has been read)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


GET = b"GET /health/live HTTP/1.1\r\nHost: testserver\r\n\r\n"


def test_a_head_past_the_limit_is_431_in_the_error_format_and_closes(server: LiveServer) -> None:
    for padding in (b"X-Padding: " + b"a" * 70_000 + b"\r\n", b"".join(b"X-H%d: v\r\n" % n for n in range(9_000))):
        with Raw(server) as sock:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: testserver\r\n" + padding + b"\r\n")
            status, headers, body = sock.response()
            assert status == 431 and headers["connection"] == "close"
            assert json.loads(body)["error"]["code"] == "request_header_too_large"
            assert sock.closed()
    with Raw(server) as sock:  # a URL is part of the head too
        sock.sendall(b"GET /health/live?" + b"q" * 70_000 + b" HTTP/1.1\r\nHost: testserver\r\n\r\n")
        assert sock.response()[0] == 431
    assert httpx.get(server.base_url + "/health/live").status_code == 200  # and it keeps serving


def test_a_head_that_trickles_in_or_never_comes_is_408_on_time(server: LiveServer) -> None:
    with Raw(server) as silent, Raw(server) as slow:
        started = time.monotonic()
        for piece in (b"GET /health/live HTTP/1.1\r\n", b"Host: testserver\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n"):
            slow.sendall(piece)  # a slowloris: a byte now and then, never the blank line
            time.sleep(HEAD_SECONDS / 3)
        status, _, body = slow.response()
        assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
        assert silent.response()[0] == 408  # never sent a byte
        assert HEAD_SECONDS - 0.1 <= time.monotonic() - started <= HEAD_SECONDS + 3
        assert slow.closed() and silent.closed()


def test_a_kept_alive_connection_outlives_the_head_timeout_and_pipelines(server: LiveServer) -> None:
    with Raw(server) as sock:
        sock.sendall(GET)
        assert sock.response()[0] == 200
        time.sleep(HEAD_SECONDS + 0.5)  # idle between requests: the keep-alive timeout (75 s) applies
        sock.sendall(GET + GET + GET)  # pipelined
        assert [sock.response()[0] for _ in range(3)] == [200, 200, 200]


def test_a_declared_body_past_the_limit_is_413_without_reading_it(server: LiveServer) -> None:
    with Raw(server) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: testserver\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000000\r\n\r\n{"
        )
        status, headers, body = sock.response()
        assert status == 413 and headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "request_too_large"


def _stream(base: str, key: str, model: str) -> dict[str, Any]:
    lines: list[str] = []
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4096}
    try:
        with httpx.stream(
            "POST", base + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    lines.append(line[6:])
    except httpx.HTTPError as exc:
        return {"lines": lines, "error": exc}
    return {"lines": lines, "error": None}


@pytest.mark.parametrize("drain_seconds", [1.5, 30.0])
def test_sigterm_stops_accepting_drains_then_ends_streams_with_an_error_event(drain_seconds: float) -> None:
    """The fake upstream's `stall` model sends a chunk every 0.2 s for 60 s: with a short
    drain it is ended with `server_shutting_down`. `prefill` is silent for 2.5 s, then
    streams its answer: within a long drain it ends on its own, and the process with it."""
    fake = FakeUpstream()
    routes = {
        "upstreams": {"stall": {"base_url": f"{fake.url}/stall/v1"}, "prefill": {"base_url": f"{fake.url}/prefill/v1"}},
        "models": {
            "stall": {"deployments": [{"upstream": "stall"}]},
            "prefill": {"deployments": [{"upstream": "prefill"}]},
        },
    }
    live = LiveServer(routes=routes, wait_ready=False, env={"GHOSTGPT_DRAIN_SECONDS": str(drain_seconds)})
    try:
        model = "stall" if drain_seconds < 5 else "prefill"
        result: dict[str, Any] = {}
        reader = threading.Thread(target=lambda: result.update(_stream(live.base_url, live.api_key, model)))
        reader.start()
        wait_for(lambda: _live_streams(live) or not reader.is_alive(), "the stream to start")
        signalled = time.monotonic()
        live.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):  # the listening socket is closed at once
            httpx.get(live.base_url + "/health/live", timeout=2)
        reader.join(timeout=drain_seconds + 10)
        assert not reader.is_alive(), "a draining server left its client hanging"
        assert live.process.wait(timeout=10) == 0
        waited = time.monotonic() - signalled
        assert result["error"] is None and result["lines"][-1] == "[DONE]", result
        last = json.loads(result["lines"][-2])
        if model == "stall":
            assert last["error"]["code"] == "server_shutting_down"
            assert drain_seconds - 0.2 <= waited <= drain_seconds + 5
            assert len(result["lines"]) > 5  # it streamed until then
        else:
            assert "error" not in last and last["choices"][0]["finish_reason"] == "stop", last
            assert waited < 10  # the process exits once nothing runs, not after the whole drain
    finally:
        live.stop()
        fake.close()


def _live_streams(live: LiveServer) -> float:
    text = httpx.get(live.base_url + "/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ghostgpt_live_streams"
    )


def test_a_port_already_taken_is_a_failure_that_says_so(server: LiveServer) -> None:
    # Exit status 1 (a supervisor sees a failure, not a clean stop or an abort) and the reason
    # on stderr, though the model is still loading in a thread at that moment.
    taken = subprocess.run(
        [sys.executable, "manage.py", "serve", "--port", str(server.port)],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert taken.returncode == 1, taken.stderr[-2000:]
    assert "address already in use" in taken.stderr and f"could not listen on 127.0.0.1:{server.port}" in taken.stderr
