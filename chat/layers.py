"""Reading a channel-layer channel with deadlines, without ever cancelling the layer's read.

With the Redis layer a read is a blocking BZPOPMIN, and cancelling one can be swallowed
(redis/redis-py#2028: the cancellation lands while the reply is being read, and the read
goes on). Whatever then awaits the cancelled read — `asyncio.wait_for`'s cleanup, a task
awaiting its listener — waits for good: a generation that never announced its end, a watcher
that never closed. So a ChannelReader reads on a task of its own into a local queue; waiting
with a deadline waits on the queue (cancelling that is safe), and the reader is ended by a
message to its own channel, never by a cancellation — unless that message cannot be sent
(the layer is down), when the reader is cancelled and left to end when it can.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

RETRY_SECONDS = 0.5  # after a failed read (a dropped Redis connection), before the next
CLOSE_WAIT_SECONDS = 10.0  # for the reader to read its own closing message
_CLOSE = "reader.close"
_closing: set[asyncio.Task[None]] = set()


class ChannelReader:
    """Messages of one channel (a `new_channel()` name of this process), read as they come.

    `limit`: at most this many unread messages are kept; later ones are dropped, as the layer
    drops a group's messages for a full channel (a watcher whose page reads slowly notices the
    gap and asks for a snapshot). None: all are kept (the reader of an agent's replies, whose
    number the request's max_tokens bounds)."""

    def __init__(self, channel: str, *, what: str, limit: int | None = None, layer: Any = None) -> None:
        self.channel = channel
        self._what = what  # names the reader in the log
        self._layer = layer or get_channel_layer()
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=limit or 0)
        self.dropped = 0
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            try:
                message = await self._layer.receive(self.channel)
            except Exception:  # a dropped Redis connection: what was sent waits in Redis for the next read
                logger.warning("%s: reading the channel layer failed; reading again", self._what)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if message.get("type") == _CLOSE:
                return
            try:
                self._messages.put_nowait(message)
            except asyncio.QueueFull:
                self.dropped += 1

    async def next(self) -> dict[str, Any]:
        """The next message, whenever it comes."""
        return await self._messages.get()

    async def get(self, timeout: float) -> dict[str, Any] | None:
        """The next message; None once `timeout` seconds passed without one."""
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                return await self._messages.get()
        except TimeoutError:
            return None

    def close(self) -> None:
        """End the reader, in the background: safe in a `finally` of a cancelled task."""
        if self._task.done():
            return
        task = asyncio.ensure_future(self._close())
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def _close(self) -> None:
        try:
            await self._layer.send(self.channel, {"type": _CLOSE})
        except Exception:  # the layer is down (or the channel full): the read cannot be ended by a message
            self._task.cancel()
            return
        done, _ = await asyncio.wait({self._task}, timeout=CLOSE_WAIT_SECONDS)
        if not done:
            self._task.cancel()
