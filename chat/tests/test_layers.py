"""ChannelReader: deadlines never cancel the channel layer's read, and a reader ends by a
message to itself — with the real Redis layer, and with a layer whose read swallows a
cancellation the way redis-py's blocking reads can (redis/redis-py#2028)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer

from chat.layers import ChannelReader


class SwallowingLayer(InMemoryChannelLayer):
    """An in-memory layer whose read takes a cancellation back and reads on, as redis-py's
    BZPOPMIN can when the cancellation lands while the reply is read."""

    async def receive(self, channel: str) -> dict[str, Any]:
        while True:
            try:
                return await super().receive(channel)
            except asyncio.CancelledError:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]


def test_deadlines_lose_no_message_of_the_redis_layer(redis_url: str) -> None:
    # Before: watchers waited with asyncio.wait_for(layer.receive(...)); each deadline cancelled
    # a BZPOPMIN, and a message popped by the cancelled read was lost (django/channels_redis#366).
    async def run() -> tuple[list[int], bool]:
        layer = RedisChannelLayer(hosts=[redis_url], prefix=f"test-{uuid.uuid4().hex[:8]}")
        channel = await layer.new_channel()
        reader = ChannelReader(channel, what="test", layer=layer)

        async def send() -> None:
            for number in range(150):
                await layer.send(channel, {"type": "n", "n": number})
                await asyncio.sleep(0.002)

        sender = asyncio.ensure_future(send())
        received: list[int] = []
        while len(received) < 150:
            message = await reader.get(0.001)  # deadlines far shorter than the gaps between messages
            if message is not None:
                received.append(message["n"])
            elif sender.done() and len(received) < 150:
                message = await reader.get(5)
                assert message is not None, f"lost after {received[-1:]}"
                received.append(message["n"])
        reader.close()
        await asyncio.sleep(0.5)
        ended = reader._task.done() and not reader._task.cancelled()  # ended by its own message
        await layer.flush()
        return received, ended

    received, ended = asyncio.run(run())
    assert received == list(range(150))
    assert ended


def test_a_read_that_swallows_its_cancellation_holds_up_nobody() -> None:
    # Before: the generation's owner cancelled its stop listener and awaited it; a swallowed
    # cancellation left it awaiting for good — the answer never saved as stopped, no "done".
    async def run() -> tuple[Any, Any, bool]:
        layer = SwallowingLayer()
        channel = await layer.new_channel()
        reader = ChannelReader(channel, what="test", layer=layer)
        quiet = await asyncio.wait_for(reader.get(0.05), 2)  # the deadline passes; nothing hangs
        await layer.send(channel, {"type": "later"})
        later = await asyncio.wait_for(reader.get(1), 2)
        reader.close()
        await asyncio.wait({reader._task}, timeout=2)
        return quiet, later, reader._task.done() and not reader._task.cancelled()

    quiet, later, ended = asyncio.run(run())
    assert quiet is None and later == {"type": "later"}
    assert ended


def test_a_reader_whose_layer_is_down_is_cancelled_not_awaited() -> None:
    class Down(InMemoryChannelLayer):
        async def send(self, channel: str, message: dict[str, Any]) -> None:
            raise ConnectionError("the layer is down")

    async def run() -> bool:
        reader = ChannelReader("specific.x!y", what="test", layer=Down())
        await asyncio.sleep(0)
        reader.close()
        await asyncio.wait({reader._task}, timeout=2)
        return reader._task.cancelled()

    assert asyncio.run(run())


def test_a_reader_keeps_at_most_its_limit_of_unread_messages() -> None:
    # A page that reads slowly must not make its watcher hold a whole answer's deltas in
    # memory: past the limit they are dropped (the watcher notices the gap and resyncs).
    async def run() -> tuple[list[int], int, Any]:
        layer = InMemoryChannelLayer(capacity=1000)
        channel = await layer.new_channel()
        reader = ChannelReader(channel, what="test", limit=3, layer=layer)
        for number in range(10):
            await layer.send(channel, {"type": "n", "n": number})
        await asyncio.sleep(0.1)  # the reader drains the layer, nobody reads the reader
        kept = [message["n"] for message in [await reader.get(0.1) for _ in range(3)] if message]
        after = await reader.get(0.05)
        reader.close()
        return kept, reader.dropped, after

    kept, dropped, after = asyncio.run(run())
    assert kept == [0, 1, 2] and dropped == 7 and after is None
