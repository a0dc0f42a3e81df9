"""GhostGPT's ASGI handler: async API views run without Django's thread per request; sync
views keep it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.signals import request_started

from ghostgpt.handler import GhostGPTASGIHandler, _async_view

# serialized_rollback like the other transactional chat tests: a flush without it re-creates the
# content types, which the next serialized test (test_revocation) would then insert again.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


async def _get(handler: GhostGPTASGIHandler, path: str) -> int:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(handler, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    while (await communicator.receive_output(10)).get("more_body"):
        pass
    await communicator.wait(10)
    return int(start["status"])


def test_routes_are_told_apart() -> None:
    assert _async_view("/v1/chat/completions") and _async_view("/health")
    assert _async_view("/v1/models/" + "m" * 500)  # long paths are resolved, just not cached
    assert not _async_view("/console") and not _async_view("/v1/no-such-route")  # sync views, the 404 handler


def test_async_views_share_one_thread_and_sync_views_get_their_own() -> None:
    asyncio.run(_requests_and_their_threads())


async def _requests_and_their_threads() -> None:
    handler = GhostGPTASGIHandler()
    threads: dict[str, set[str]] = {"/v1": set(), "/console": set()}
    current: list[str] = []

    def seen(**kwargs: Any) -> None:  # runs where Django runs the request's sync work
        threads[current[0]].add(threading.current_thread().name)  # a new executor, a new name

    request_started.connect(seen, dispatch_uid="test-handler-threads")
    try:
        for path in ["/v1", "/console"] * 4:
            current[:] = [path]
            assert await _get(handler, path) == 200
    finally:
        request_started.disconnect(dispatch_uid="test-handler-threads")
    assert len(threads["/v1"]) == 1  # asgiref's one long-lived thread, every time
    assert len(threads["/console"]) == 4  # a thread of its own per request (Django's ThreadSensitiveContext)
    assert not threads["/console"] & threads["/v1"]
