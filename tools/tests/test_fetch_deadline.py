"""One wall-clock deadline per fetch: a server that trickles its header bytes, or a DNS
lookup that never answers, ends the fetch at the deadline — not minutes later."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tools.base import ToolError
from tools.fetching import SafeFetcher

DEADLINE = 2.0


@pytest.fixture
def trickler() -> Iterator[int]:
    """A server that answers one header byte every 0.3 s, for up to 30 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(4096)
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
                    if stop.wait(0.3):
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_a_trickling_server_is_cut_at_the_deadline(settings: Any, trickler: int) -> None:
    # Before: the deadline was per socket operation, so every byte in time kept it going.
    settings.TOOLS = {**settings.TOOLS, "FETCH_ALLOW": [f"127.0.0.1:{trickler}"], "FETCH_DEADLINE_SECONDS": DEADLINE}
    started = time.monotonic()
    with pytest.raises(ToolError) as caught:
        SafeFetcher().fetch(f"http://127.0.0.1:{trickler}/")
    elapsed = time.monotonic() - started
    assert caught.value.code == "fetch_timeout" and caught.value.status == 504
    assert DEADLINE <= elapsed < DEADLINE + 1.0, elapsed


def test_a_dns_lookup_that_never_answers_is_cut_at_the_deadline(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.TOOLS = {**settings.TOOLS, "FETCH_DEADLINE_SECONDS": DEADLINE}
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: time.sleep(8) or [])
    started = time.monotonic()
    with pytest.raises(ToolError) as caught:
        SafeFetcher().fetch("http://example.invalid/")
    elapsed = time.monotonic() - started
    assert caught.value.code == "fetch_timeout"
    assert elapsed < DEADLINE + 1.0, elapsed
