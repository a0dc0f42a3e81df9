"""GhostGPT's ASGI handler: the API's async views are served on the loop (no thread, one
watcher task that cancels the view when the client leaves); other async views skip Django's
thread per request; sync views keep it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.signals import request_finished, request_started
from django.http import HttpRequest, HttpResponse
from django.urls import path

from ghostgpt.handler import API, ASYNC, PAGE, GhostGPTASGIHandler, kind_of

# serialized_rollback like the other transactional chat tests: a flush without it re-creates the
# content types, which the next serialized test (test_revocation) would then insert again.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }


async def _get(handler: GhostGPTASGIHandler, path: str) -> int:
    communicator = ApplicationCommunicator(handler, _scope("GET", path))
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    while (await communicator.receive_output(10)).get("more_body"):
        pass
    await communicator.wait(10)
    return int(start["status"])


def test_routes_are_told_apart() -> None:
    assert kind_of("/v1/chat/completions") == API and kind_of("/health") == API
    assert kind_of("/v1/models/" + "m" * 500) == API  # long paths are resolved, just not cached
    assert kind_of("/console") == PAGE and kind_of("/v1/no-such-route") == PAGE  # sync views, the 404 handler
    assert kind_of("/api/ask") == ASYNC  # an async page view: Django's handling, minus the thread


def test_api_views_run_their_signals_on_the_loop_and_sync_views_get_a_thread_each() -> None:
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
    assert threads["/v1"] == {threading.current_thread().name}  # the loop's own thread: no hop
    assert len(threads["/console"]) == 4  # a thread of its own per request (Django's ThreadSensitiveContext)
    assert not threads["/console"] & threads["/v1"]


# A view of the API (by its module) that waits for an answer that never comes.
left: list[str] = []


async def _waits_forever(request: HttpRequest) -> HttpResponse:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        left.append(request.path)
        raise
    return HttpResponse("too late")


_waits_forever.__module__ = "chat.api.probe"
urlpatterns = [path("v1/waits", _waits_forever)]


def test_a_client_that_leaves_cancels_the_api_view_at_once(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__
    left.clear()
    asyncio.run(_leave_while_waiting())
    assert left == ["/v1/waits"]


async def _leave_while_waiting() -> None:
    assert kind_of("/v1/waits") == API
    communicator = ApplicationCommunicator(GhostGPTASGIHandler(), _scope("GET", "/v1/waits"))
    await communicator.send_input({"type": "http.request", "body": b""})
    await asyncio.sleep(0.2)
    assert not left  # still waiting
    await communicator.send_input({"type": "http.disconnect"})
    await asyncio.sleep(0.2)
    assert left == ["/v1/waits"] and communicator.future.done()  # cancelled at once, the handler ended
    await communicator.wait(1)  # without an error
    assert await communicator.receive_nothing()  # nothing was sent to a client that left


def test_request_signals_have_no_async_receivers() -> None:
    """handle_api sends request_started/request_finished on the loop with `send`, which
    cannot run an async receiver there: an app or package that adds one must be noticed."""
    for signal in (request_started, request_finished):
        assert signal.receivers and not any(is_async for *_, is_async in signal.receivers)
