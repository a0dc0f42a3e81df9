"""Bounded thread pools of their own for slow blocking work in the web process.

The event loop's default executor also runs the embedded model's tokenizer: if image
fetches or OCR shared it, six slow image URLs would stall every embedded request. Each
kind of work gets its own few threads and a bounded queue; when the queue is full the
caller gets `Busy` (a 503 with Retry-After) at once instead of waiting behind it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Busy(Exception):
    """The pool's queue is full."""

    def __init__(self, pool: str) -> None:
        super().__init__(f"The server is busy with other {pool} work; retry shortly.")
        self.pool = pool


class BoundedExecutor:
    def __init__(self, name: str, *, workers: int, queue: int) -> None:
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"ghostgpt-{name}")
        self._slots = threading.BoundedSemaphore(workers + queue)

    def submit(self, function: Callable[..., T], /, *args: Any) -> Future[T]:
        """Start `function(*args)` on this pool from synchronous code; `Busy` when full."""
        if not self._slots.acquire(blocking=False):
            raise Busy(self.name)
        future = self._executor.submit(function, *args)
        future.add_done_callback(lambda _: self._slots.release())
        return future

    async def run(self, function: Callable[..., T], /, *args: Any) -> T:
        """`function(*args)` on one of this pool's threads; `Busy` when it is full."""
        if not self._slots.acquire(blocking=False):
            raise Busy(self.name)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        finally:
            self._slots.release()


fetch_pool = BoundedExecutor("fetch", workers=8, queue=32)  # images fetched from URLs
ocr_pool = BoundedExecutor("ocr", workers=1, queue=16)  # RapidOCR uses every core
# Tool jobs in embedded mode (no broker): beside the request that made them, not inside it.
tool_pool = BoundedExecutor("tool", workers=2, queue=16)
