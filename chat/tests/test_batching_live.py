"""Continuous batching in the embedded model, through the API of a live server: eight
streams decode together, a seeded request's text does not depend on what else runs beside
it, and a cancelled stream frees its sequence at once without touching the others' text."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chat.backends.sequences import SequenceCache

from .live import LiveServer

SEQUENCES = 8
TOPICS = ["a cat", "the sea", "a robot", "winter", "a city", "music", "a garden", "the moon"]


@pytest.fixture(scope="module")
def batching() -> Iterator[LiveServer]:
    server = LiveServer(env={"GHOSTGPT_PARALLEL_SEQUENCES": str(SEQUENCES), "GHOSTGPT_N_CTX": "2048"})
    yield server
    server.stop()


class Stream:
    """One streamed chat completion read on its own thread: its text, when its first
    token and its end arrived."""

    def __init__(self, server: LiveServer, topic: str, *, seed: int, max_tokens: int = 48) -> None:
        self.body = {
            "model": "ghostgpt",
            "messages": [{"role": "user", "content": f"Write a short story about {topic}."}],
            "max_tokens": max_tokens,
            "temperature": 0.9,
            "seed": seed,
            "stream": True,
        }
        self.server = server
        self.text = ""
        self.first: float | None = None
        self.ended: float | None = None
        self.finish: str | None = None
        self.stop_after: int | None = None  # close the connection after this many deltas
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Stream:
        self.thread.start()
        return self

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.server.api_key}"}
        deltas = 0
        with httpx.stream(
            "POST", self.server.base_url + "/v1/chat/completions", json=self.body, headers=headers, timeout=120
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk: dict[str, Any] = httpx.Response(200, content=line[6:]).json()
                choice = chunk["choices"][0]
                if choice["delta"].get("content"):
                    self.first = self.first or time.monotonic()
                    self.text += choice["delta"]["content"]
                    deltas += 1
                self.finish = choice.get("finish_reason") or self.finish
                if self.stop_after is not None and deltas >= self.stop_after:
                    break  # leaving the block closes the connection: the client is gone
        self.ended = time.monotonic()

    def join(self) -> Stream:
        self.thread.join(timeout=120)
        assert not self.thread.is_alive(), "the stream hung"
        return self


def wait_first_token(streams: list[Stream], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while any(stream.first is None for stream in streams):
        assert time.monotonic() < deadline, "a stream got no token"
        time.sleep(0.01)


def test_eight_streams_decode_together_and_a_seeded_text_is_the_same_alone_and_amid_seven(
    batching: LiveServer,
) -> None:
    alone = Stream(batching, "a lighthouse", seed=1234).start().join()
    assert alone.finish == "length" and alone.text

    others = [Stream(batching, topic, seed=index) for index, topic in enumerate(TOPICS[:7])]
    for stream in others:
        stream.start()
    wait_first_token(others)
    assert batching.stats()["running"] == 7, "the seven decode at once, none waits"
    joined = Stream(batching, "a lighthouse", seed=1234).start()  # joins the running batch
    for stream in [joined, *others]:
        stream.join()

    assert joined.text == alone.text
    # It joined while the others were decoding and got its first token before any ended.
    assert joined.first is not None and joined.first < min(stream.ended or 0 for stream in others)
    assert batching.stats()["waiting"] == 0


def test_cancelling_one_of_eight_frees_its_sequence_at_once_and_leaves_the_others_text(batching: LiveServer) -> None:
    reference = [Stream(batching, topic, seed=100 + index) for index, topic in enumerate(TOPICS[:7])]
    for stream in reference:
        stream.start()
    for stream in reference:
        stream.join()

    before = batching.stats()
    victim = Stream(batching, TOPICS[7], seed=99, max_tokens=2000)
    victim.stop_after = 5
    survivors = [Stream(batching, topic, seed=100 + index, max_tokens=48) for index, topic in enumerate(TOPICS[:7])]
    victim.start()
    for stream in survivors:
        stream.start()
    victim.join()
    left = time.monotonic()
    deadline = left + 1.0
    while batching.stats()["cancelled"] == before["cancelled"]:
        assert time.monotonic() < deadline, "the cancelled sequence was not freed within a second"
        time.sleep(0.01)
    freed_after = time.monotonic() - left
    stats = batching.stats()
    assert stats["running"] <= 7, "the victim's sequence is free"
    for stream in survivors:
        stream.join()
    assert any(stream.ended and stream.ended > left + freed_after for stream in survivors), (
        "the survivors were still decoding when the victim left"
    )
    assert [stream.text for stream in survivors] == [stream.text for stream in reference]
    assert [stream.finish for stream in survivors] == [stream.finish for stream in reference]
    assert "Traceback" not in batching.log()


def test_a_seeded_follow_up_reads_the_same_whether_or_not_its_sequence_holds_the_last_answer(
    batching: LiveServer,
) -> None:
    """A chat's next turn shares its prefix with the previous turn's prompt *and answer*.
    The answer's cells were decoded a token at a time; a seeded request must not reuse them
    (they differ in the last bits from a prompt read), so the text is the same whether the
    sequence still holds that turn or has been taken by other requests since."""
    headers = {"Authorization": f"Bearer {batching.api_key}"}
    url = batching.base_url + "/v1/chat/completions"
    first_turn = [{"role": "user", "content": "Tell me about the sea."}]
    body = {"model": "ghostgpt", "max_tokens": 40, "temperature": 0.9, "seed": 5}
    answer = httpx.post(url, json={**body, "messages": first_turn}, headers=headers, timeout=60).json()
    follow_up = {
        **body,
        "messages": [
            *first_turn,
            {"role": "assistant", "content": answer["choices"][0]["message"]["content"]},
            {"role": "user", "content": "And about rivers?"},
        ],
    }
    warm = httpx.post(url, json=follow_up, headers=headers, timeout=60).json()["choices"][0]["message"]["content"]
    others = [Stream(batching, topic, seed=7, max_tokens=33) for topic in TOPICS]  # take every sequence
    for stream in others:
        stream.start()
    for stream in others:
        stream.join()
    cold = httpx.post(url, json=follow_up, headers=headers, timeout=60).json()["choices"][0]["message"]["content"]
    assert warm == cold


def test_prompt_chunks_are_never_a_lone_token() -> None:
    for length in range(1, 300):
        for room in (1, 2, 3, 5, 64, 128):
            cache = SequenceCache(0, pending=list(range(length)), reading=True)
            while cache.pending:
                take = cache.chunk(room)
                assert 1 <= take <= len(cache.pending)
                assert take >= 2 or length == 1, (length, room, take)
                cache.evaluated(take)
                assert len(cache.pending) != 1, (length, room)
            assert cache.exact == length
