"""The response cache's parts: what makes two requests the same, the entry format, and the
limits of both stores (the database's and a real Redis)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from chat.api import cache
from chat.backends.base import (
    Accepted,
    ChatMessage,
    Finish,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from chat.models import CachedResponse
from chat.services import cached_responses_purge

REQUEST = GenerationRequest(
    model="alias",
    sampling=SamplingParams(max_tokens=100, temperature=0),
    messages=(ChatMessage("user", "Hello", origin="messages[0]"),),
    tools=(ToolSpec("f", parameters={"type": "object"}),),
)
EVENTS = [
    Accepted(12, "fp_1"),
    TextDelta(0, "Hé", 1),
    ToolCallDelta(0, 0, '{"a"', "call_1", "f", 2),
    ToolCallDelta(0, 0, ": 1}", None, None, 1),
    Finish(0, "tool_calls"),
    Usage(12, 4, queue_seconds=0.5, model_seconds=1.0, cached_tokens=3, cache_write_tokens=2, reasoning_tokens=1),
]


def test_what_does_not_change_the_answer_does_not_change_the_key() -> None:
    key = cache.entry_key("a1:k1", "model", REQUEST)
    same = replace(
        REQUEST,
        model="another-alias",  # the canonical id is what counts
        stream=False,
        user="someone",
        prompt_cache_key="p",
        messages=(ChatMessage("user", "Hello", origin="contents[0]", cache_ttl="5m"),),
        tools=(ToolSpec("f", parameters={"type": "object"}, cache_ttl="1h"),),
    )
    assert cache.entry_key("a1:k1", "model", same) == key
    # The same schema with its keys in another order is the same request.
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    reordered = {"properties": {"b": {"type": "integer"}, "a": {"type": "string"}}, "type": "object"}
    assert cache.entry_key("a1:k1", "model", replace(REQUEST, tools=(ToolSpec("f", parameters=schema),))) == (
        cache.entry_key("a1:k1", "model", replace(REQUEST, tools=(ToolSpec("f", parameters=reordered),)))
    )
    for different in (
        replace(REQUEST, messages=(ChatMessage("user", "Hello!"),)),
        replace(REQUEST, sampling=SamplingParams(max_tokens=101, temperature=0)),
        replace(REQUEST, tools=()),
        replace(REQUEST, n=2),
    ):
        assert cache.entry_key("a1:k1", "model", different) != key
    assert cache.entry_key("a1:k2", "model", REQUEST) != key  # another key
    assert cache.entry_key("a2:k1", "model", REQUEST) != key  # another account
    assert cache.entry_key("a1:k1", "other-model", REQUEST) != key


def test_deterministic_means_temperature_zero_or_a_seed() -> None:
    assert cache.deterministic(REQUEST)
    assert cache.deterministic(replace(REQUEST, sampling=SamplingParams(max_tokens=9, temperature=1, seed=3)))
    assert not cache.deterministic(replace(REQUEST, sampling=SamplingParams(max_tokens=9, temperature=0.2)))


def test_an_entry_replays_the_events_without_this_requests_timings() -> None:
    decoded = cache._decode(cache._encode(EVENTS))
    assert decoded is not None
    assert list(decoded[:-1]) == EVENTS[:-1]
    usage = decoded[-1]
    assert isinstance(usage, Usage)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.cache_write_tokens) == (
        12,
        4,
        3,
        2,
    )
    assert (usage.reasoning_tokens, usage.model_seconds, usage.queue_seconds) == (1, 0.0, 0.0)
    assert cache._decode(b'{"v": 99, "events": []}') is None  # another format: a miss
    assert cache._decode(b'{"v": 1, "events": [["?", 1]]}') is None


def test_only_a_complete_answer_is_kept() -> None:
    assert cache._complete(EVENTS, 1)
    assert not cache._complete(EVENTS, 2)  # choice 1 never finished
    assert not cache._complete(EVENTS[:-1], 1)  # no usage: cut short
    assert not cache._complete([], 1)


@pytest.mark.django_db
def test_the_database_keeps_at_most_max_entries_per_scope_and_none_expired(settings: Any) -> None:
    settings.RESPONSE_CACHE = {**settings.RESPONSE_CACHE, "MAX_ENTRIES": 3, "TTL_SECONDS": 60}
    for number in range(5):
        cache._database_put(scope="a1:k1", key=f"k{number}", body=b"x")
    cache._database_put(scope="a1:k2", key="other", body=b"y")
    assert sorted(CachedResponse.objects.filter(scope="a1:k1").values_list("key", flat=True)) == ["k2", "k3", "k4"]
    found = cache._database_get("k4")
    assert found is not None and found[0] == b"x" and 55 < found[1] <= 60  # the body, and the seconds it has left
    assert cache._database_get("k0") is None
    CachedResponse.objects.filter(key="k4").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert cache._database_get("k4") is None  # expired: a miss before the purge runs
    assert cached_responses_purge() == 1
    assert CachedResponse.objects.count() == 3


def test_redis_keeps_at_most_max_entries_per_scope_with_a_ttl(settings: Any, redis_url: str) -> None:
    import redis.asyncio as redis

    settings.RESPONSE_CACHE = {**settings.RESPONSE_CACHE, "MAX_ENTRIES": 2, "TTL_SECONDS": 30}
    scope = f"a-test-{timezone.now().timestamp()}"

    async def run() -> tuple[list[bytes | None], float]:
        client = redis.Redis.from_url(redis_url)
        store = cache.RedisStore(client)
        try:
            for number in range(4):
                await store.put(scope, f"{scope}-{number}", f"body {number}".encode())
            found = [await store.get(f"{scope}-{number}") for number in range(4)]
            got = [None if entry is None else entry[0] for entry in found]
            left = found[3][1] if found[3] else 0.0
            return got, left
        finally:
            await client.aclose()

    got, left = asyncio.run(run())
    assert got == [None, None, b"body 2", b"body 3"]
    assert 25 < left <= 30


def test_a_process_keeps_recent_entries_until_they_expire_within_its_byte_budget(settings: Any) -> None:
    settings.RESPONSE_CACHE = {**settings.RESPONSE_CACHE, "LOCAL_BYTES": 100}
    local = cache.Local()
    events = tuple(EVENTS)
    local.put("a", events, 40, 60)
    local.put("b", events, 40, 60)
    assert local.get("a") == events  # now the most recently used
    local.put("c", events, 40, 60)  # 120 bytes > 100: the least recently used ("b") goes
    assert (local.get("a"), local.get("b"), local.get("c")) == (events, None, events)
    local.put("big", events, 101, 60)  # larger than the whole budget: not kept
    assert local.get("big") is None and local.size == 80
    local.put("gone", events, 10, -1)  # already expired
    assert local.get("gone") is None and local.size == 80
