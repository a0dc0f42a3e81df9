"""The upstream wire translators on their own: recorded and documented streams in, our
events out, and what a broken upstream gets."""

from __future__ import annotations

import json
import math

import pytest

from chat.backends.base import ChatMessage, Finish, GenerationRequest, SamplingParams, TextDelta, ToolCallDelta, Usage
from chat.backends.wire import WIRES
from chat.backends.wire.base import UpstreamFailed

from .fake_upstream import TOOL_RECORDING, anthropic_events, gemini_events, recorded_chunks

CHAT = GenerationRequest(
    model="m", sampling=SamplingParams(max_tokens=64), messages=(ChatMessage(role="user", content="hi"),)
)


def run(kind: str, frames: list[tuple[str, object]]) -> list[object]:
    translator = WIRES[kind].translator(CHAT, "test")
    events: list[object] = []
    for name, data in frames:
        events += list(translator.feed(name, data))
    return events + list(translator.close())


def sse_frames(raw: list[bytes]) -> list[tuple[str, object]]:
    frames = []
    for block in raw:
        name, data = "", None
        for line in block.decode().splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
        frames.append((name, data))
    return frames


def test_openai_parallel_tool_calls_from_a_recording() -> None:
    events = run("openai", [("", c) for c in recorded_chunks(TOOL_RECORDING)] + [("", "[DONE]")])
    starts = [e for e in events if isinstance(e, ToolCallDelta) and e.id]
    assert [s.call for s in starts] == [0, 1] and all(s.name for s in starts)
    arguments = ["", ""]
    for event in events:
        if isinstance(event, ToolCallDelta):
            arguments[event.call] += event.arguments
    assert all(json.loads(a) for a in arguments)
    assert [e.reason for e in events if isinstance(e, Finish)] == ["tool_calls"]
    assert isinstance(events[-1], Usage) and not events[-1].estimated


def test_anthropic_tool_use_and_usage() -> None:
    tools = [{"name": "get_weather"}]
    events = run("anthropic", sse_frames(anthropic_events(tools)))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me check."
    call = [e for e in events if isinstance(e, ToolCallDelta)]
    assert call[0].name == "get_weather" and "".join(e.arguments for e in call) == '{"city": "Paris"}'
    assert [e.reason for e in events if isinstance(e, Finish)] == ["tool_calls"]
    assert events[-1] == Usage(25, 17)


def test_gemini_function_call_arrives_whole() -> None:
    tools = [{"functionDeclarations": [{"name": "get_weather"}]}]
    events = run("gemini", sse_frames(gemini_events(tools)))
    call = next(e for e in events if isinstance(e, ToolCallDelta))
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"} and call.id
    assert [e.reason for e in events if isinstance(e, Finish)] == ["tool_calls"]
    assert events[-1] == Usage(31, 19)


@pytest.mark.parametrize(
    ("kind", "frames"),
    [
        ("openai", [("", {"choices": [{"index": 3, "delta": {"content": "x"}}]})]),  # a choice never asked for
        ("openai", [("", {"error": {"message": "boom"}})]),
        ("anthropic", [("error", {"type": "error", "error": {"type": "api_error", "message": "boom"}})]),
        ("gemini", [("", {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}})]),
        ("openai", [("", {"choices": [{"index": 0, "delta": {"content": "cut"}}]})]),  # no [DONE]: cut off
    ],
)
def test_broken_upstreams_fail_cleanly(kind: str, frames: list[tuple[str, object]]) -> None:
    with pytest.raises(UpstreamFailed):
        run(kind, frames)


def test_json_on_the_stream_path_reads_and_writes_what_the_stdlib_did() -> None:
    """chat.jsonbytes: orjson, and the stdlib for what orjson refuses."""
    from decimal import Decimal

    from chat.jsonbytes import dumps, loads

    chunk = {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "Привет, 世界 \u2028"}}], "n": 0.1}
    assert dumps(chunk) == json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(dumps({"big": 2**70, "price": Decimal("0.25")})) == {"big": 2**70, "price": "0.25"}
    assert loads(dumps(chunk)) == chunk
    assert math.isnan(loads(b'{"usage": {"prompt_tokens": NaN}}')["usage"]["prompt_tokens"])  # as json.loads reads it
    assert loads('{"a": 1e400}') == {"a": float("inf")}
    for broken in (b"{", b"\xff\xfe", b"data", b""):
        with pytest.raises(ValueError):
            loads(broken)


# Usage objects as the providers document them (each provider's API reference and its
# prompt-caching / reasoning guides); our convention: prompt = every input token, cache
# reads and writes included; completion = every output token, reasoning included.


def test_openai_usage_details_are_inside_the_totals() -> None:
    usage = {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 64, "audio_tokens": 0},
    }
    events = run("openai", [("", {"choices": [], "usage": usage}), ("", "[DONE]")])
    assert events[-1] == Usage(2006, 300, cached_tokens=1920, reasoning_tokens=64)


def test_anthropic_cache_counts_are_outside_input_tokens() -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "usage": {
                "input_tokens": 21,
                "cache_creation_input_tokens": 188086,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    }
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 393}}
    frames = [("message_start", start), ("message_delta", delta), ("message_stop", {"type": "message_stop"})]
    assert run("anthropic", frames)[-1] == Usage(21 + 188086, 393, cache_write_tokens=188086)
    # Cumulative input counts in message_delta (newer API versions) replace message_start's.
    later = {**delta, "usage": {"output_tokens": 393, "input_tokens": 21, "cache_read_input_tokens": 188086}}
    frames[1] = ("message_delta", later)
    assert run("anthropic", frames)[-1] == Usage(21 + 188086 + 188086, 393, 0, 0, False, 188086, 188086)


def test_gemini_thoughts_are_outside_the_candidates() -> None:
    chunk = {
        "candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "4"}]}, "finishReason": "STOP"}],
        "usageMetadata": {
            "promptTokenCount": 1200,
            "cachedContentTokenCount": 1000,
            "candidatesTokenCount": 50,
            "thoughtsTokenCount": 500,
            "totalTokenCount": 1750,
        },
    }
    assert run("gemini", [("", chunk)])[-1] == Usage(1200, 550, cached_tokens=1000, reasoning_tokens=500)


@pytest.mark.parametrize("bad", [-5, "12", None, True, 1e400, float("nan"), [], {}])
def test_hostile_usage_details_count_as_nothing(bad: object) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": bad}}
    events = run("openai", [("", {"choices": [], "usage": usage}), ("", "[DONE]")])
    assert events[-1] == Usage(10, 5)
