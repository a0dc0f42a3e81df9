"""until_stopped: the guard around every stream (revocation, drain); ByteStreamResponse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chat.api.streaming import ByteStreamResponse, until_stopped


async def _stalls_after_one() -> AsyncIterator[int]:
    yield 1
    await asyncio.sleep(60)  # an upstream that went silent
    yield 2


async def _stop_while_stalled() -> tuple[list[int], int]:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stop.set)
    got = [event async for event in until_stopped(_stalls_after_one(), stop)]  # type: ignore[arg-type]
    task = asyncio.current_task()
    assert task is not None
    return got, task.cancelling()


def test_a_stop_ends_a_stalled_stream_and_leaves_the_task_uncancelled() -> None:
    got, cancelling = asyncio.run(asyncio.wait_for(_stop_while_stalled(), 10))
    assert got == [1] and cancelling == 0


async def _cancel_while_stalled() -> None:
    async def consume() -> None:
        async for _ in until_stopped(_stalls_after_one(), asyncio.Event()):  # type: ignore[arg-type]
            pass

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    await task


def test_a_real_cancellation_still_propagates() -> None:
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_cancel_while_stalled())


async def _stop_and_cancel_together() -> None:
    stop = asyncio.Event()

    async def consume() -> None:
        async for _ in until_stopped(_stalls_after_one(), stop):  # type: ignore[arg-type]
            pass

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.05)
    stop.set()
    task.cancel()  # the client left at the same moment: its cancellation must not be swallowed
    await task


def test_a_real_cancellation_at_the_moment_of_a_stop_still_propagates() -> None:
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_stop_and_cancel_together())


async def _chunks() -> AsyncIterator[bytes]:
    yield b"data: 1\n\n"
    yield b"data: [DONE]\n\n"


def test_a_byte_stream_hands_the_server_its_own_iterator() -> None:
    chunks = _chunks()
    response = ByteStreamResponse(chunks, content_type="text/event-stream")
    assert aiter(response) is chunks  # no per-chunk wrapper generators in between

    async def read() -> list[bytes]:
        return [chunk async for chunk in ByteStreamResponse(_chunks())]

    assert asyncio.run(read()) == [b"data: 1\n\n", b"data: [DONE]\n\n"]


def test_a_byte_stream_of_a_sync_iterator_is_served_as_django_serves_it() -> None:
    async def read() -> list[bytes]:
        return [chunk async for chunk in ByteStreamResponse(iter(["a", b"b"]))]

    with pytest.warns(Warning, match="synchronous iterators"):
        assert asyncio.run(read()) == [b"a", b"b"]
