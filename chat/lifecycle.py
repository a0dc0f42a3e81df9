"""A web process's graceful stop (SIGTERM under `manage.py serve`, see
chat/management/commands/serve.py).

Draining: the process has stopped accepting connections; requests that still arrive on
kept-alive connections get 503 + `Connection: close` (a proxy retries them on another
process), and /health/ready says so. Generations already running go on. Ending: the drain
time (GHOSTGPT_DRAIN_SECONDS) is over; every generation still running is stopped at once
and ends with an error event (`server_shutting_down`) instead of a cut connection.

Every generation (API streams and bodies, chat-page generations) holds a stop event here
for its lifetime (chat.api.streaming.until_revoked), so the drain knows when none is left.
All of it runs on the process's one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

_generations: set[asyncio.Event] = set()
_state = {"draining": False, "ending": False}


def draining() -> bool:
    return _state["draining"]


def ending() -> bool:
    return _state["ending"]


def running() -> int:
    """Generations in this process now."""
    return len(_generations)


@contextlib.contextmanager
def generation_stopper() -> Iterator[asyncio.Event]:
    """An event set when this generation must stop: by whoever holds it, or by the end of a
    drain."""
    stop = asyncio.Event()
    if _state["ending"]:
        stop.set()
    _generations.add(stop)
    try:
        yield stop
    finally:
        _generations.discard(stop)


def begin_drain() -> None:
    _state["draining"] = True


def end_generations() -> None:
    _state["ending"] = True
    for stop in list(_generations):
        stop.set()
