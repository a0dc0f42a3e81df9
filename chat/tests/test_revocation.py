"""Deleting or disabling a key ends its live connections at once: its agents' WebSockets
(over the channel layer) and its streams (a flag in the shared cache)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator

from chat.agents.consumer import AgentConsumer
from chat.agents.services import agent_token_create
from chat.api.streaming import AccessRevoked, until_revoked
from chat.backends.base import Event, TextDelta
from chat.models import ApiKey
from chat.services import account_create_with_key


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_deleting_an_agent_token_closes_its_websocket() -> None:
    key, secret = agent_token_create(name="worker")

    async def scenario() -> dict:
        communicator = WebsocketCommunicator(
            AgentConsumer.as_asgi(), "/ws/agent", headers=[(b"authorization", f"Bearer {secret}".encode())]
        )
        connected, _ = await communicator.connect()
        assert connected
        assert (await communicator.receive_json_from())["type"] == "welcome"
        await sync_to_async(ApiKey.objects.filter(pk=key.pk).delete)()
        closed = await communicator.receive_output(timeout=3)
        await communicator.wait()
        return closed

    closed = async_to_sync(scenario)()  # thread-sensitive ORM calls run on this thread (its connection)
    assert closed == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_stream_of_a_disabled_key_ends_within_the_poll_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chat.api.streaming.REVOCATION_POLL_SECONDS", 0.1)
    key, _ = account_create_with_key(name="streamer")

    async def endless() -> AsyncIterator[Event]:
        while True:
            await asyncio.sleep(0.02)
            yield TextDelta(index=0, text="x")

    async def scenario() -> tuple[int, float]:
        received, loop = 0, asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(AccessRevoked):
            async for _ in until_revoked(endless(), key.pk):
                received += 1
                if received == 5:
                    key.is_active = False
                    await sync_to_async(key.save)(update_fields=["is_active"])  # the signal: what admin and API do
        return received, loop.time() - started

    received, elapsed = async_to_sync(scenario)()
    assert received >= 5 and elapsed < 2.0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_stalled_stream_of_a_deleted_key_ends_without_waiting_for_its_next_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: the flag was read only when an event arrived, so an upstream that went quiet
    # kept the revoked stream (and its reservation) open until it spoke again.
    monkeypatch.setattr("chat.api.streaming.REVOCATION_POLL_SECONDS", 0.1)
    key, _ = account_create_with_key(name="stalled")
    state = {"closed": False}

    async def stalls() -> AsyncIterator[Event]:
        try:
            yield TextDelta(index=0, text="first")
            await asyncio.sleep(3600)  # the upstream goes quiet
            yield TextDelta(index=0, text="never")
        finally:
            state["closed"] = True

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(AccessRevoked):
            async for _ in until_revoked(stalls(), key.pk):
                await sync_to_async(ApiKey.objects.filter(pk=key.pk).delete)()
        return loop.time() - started

    elapsed = async_to_sync(scenario)()
    assert elapsed < 2.0 and state["closed"], "the backend stream is closed, not left waiting"
