"""OpenAI's Responses API against a live server: openai-python's `responses.create` and
`responses.stream` (strict response validation), every body and event validated against
the official spec, the exact event order Codex relies on, function calls through a routed
upstream (a fake on 127.0.0.1 replaying a recorded api.openai.com stream), stored responses
(previous_response_id, GET, DELETE, input_items, other accounts), dropped built-in tools,
and a failure after the stream started."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import NotFoundError, OpenAI

from .fake_upstream import TOOL_RECORDING, FakeUpstream, recorded_chunks, recorded_text
from .live import ROOT, LiveServer
from .openapi import assert_matches

STREAM_EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
}
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
    {"type": "web_search"},  # a built-in tool Codex sends; this deployment cannot run it
]


@pytest.fixture(scope="module")
def server(fake: FakeUpstream) -> Iterator[LiveServer]:
    routes = {
        "upstreams": {
            "ok": {"base_url": f"{fake.url}/ok/v1", "api_key": "sk-up"},
            "tools": {"base_url": f"{fake.url}/tools/v1", "api_key": "sk-up"},
            "drop": {"base_url": f"{fake.url}/drop/v1", "api_key": "sk-up"},
        },
        "models": {
            "gpt-4o": {"deployments": [{"upstream": "ok"}]},
            "tool-caller": {"deployments": [{"upstream": "tools"}]},
            "drops": {"deployments": [{"upstream": "drop"}]},
        },
    }
    live = LiveServer(routes=routes)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def sdk(server: LiveServer) -> OpenAI:
    return OpenAI(
        base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0, _strict_response_validation=True
    )


def raw_events(server: LiveServer, body: dict[str, Any], key: str | None = None) -> list[dict[str, Any]]:
    """The SSE events of a streamed /v1/responses, checked against the spec one by one."""
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        response = http.post("/v1/responses", json={**body, "stream": True}, headers=headers)
    assert response.status_code == 200, response.text
    events, name = [], None
    for line in response.text.split("\n"):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            assert data["type"] == name, "the SSE event name is the event's type"
            assert_matches(STREAM_EVENT_SCHEMAS[data["type"]], data)
            events.append(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_create_answers_a_spec_valid_response(sdk: OpenAI, server: LiveServer) -> None:
    response = sdk.responses.create(model="ghostgpt", input="Name one colour.", max_output_tokens=64)
    assert response.object == "response" and response.status in ("completed", "incomplete")
    assert response.output_text.strip() and response.output[0].type == "message"
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    raw = httpx.post(
        server.base_url + "/v1/responses",
        json={
            "model": "ghostgpt",
            "input": "Hi",
            "instructions": "Answer briefly.",
            "metadata": {"team": "a"},
            "max_output_tokens": 48,  # a small model may ramble to the 4,096-token default
        },
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=120,
    ).json()
    assert_matches("Response", raw)
    assert raw["instructions"] == "Answer briefly." and raw["metadata"] == {"team": "a"}
    assert "total_cost" in raw["usage"]  # billed like every /v1 generation


def test_the_stream_follows_openais_event_order(server: LiveServer) -> None:
    events = raw_events(server, {"model": "gpt-4o", "input": "Weather?"})
    kinds = [e["type"] for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == recorded_text() and events[-1]["response"]["output_text"] == text
    item_id = events[2]["item"]["id"]
    assert all(e["item_id"] == item_id for e in events[3:-2] if "item_id" in e)
    assert events[-1]["response"]["usage"]["input_tokens"] == recorded_chunks()[-1]["usage"]["prompt_tokens"]


def test_the_sdk_stream_helper_and_function_calls(sdk: OpenAI, server: LiveServer) -> None:
    with sdk.responses.stream(model="tool-caller", input="Weather in Paris and Tokyo?", tools=TOOLS) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    recorded = [
        call["function"]["name"]
        for chunk in recorded_chunks(TOOL_RECORDING)
        if chunk["choices"]
        for call in chunk["choices"][0]["delta"].get("tool_calls") or []
        if call.get("function", {}).get("name")
    ]
    assert [c.name for c in calls] == recorded and len(calls) == 2
    assert all(isinstance(json.loads(c.arguments), dict) for c in calls) and all(c.call_id for c in calls)
    events = raw_events(server, {"model": "tool-caller", "input": "Weather?", "tools": TOOLS})
    kinds = [e["type"] for e in events]
    for index in range(2):  # each call: added, argument deltas, arguments done, item done — in that order
        mine = [e["type"] for e in events if e.get("output_index") == index]
        assert mine[0] == "response.output_item.added" and mine[-1] == "response.output_item.done"
        assert mine[-2] == "response.function_call_arguments.done"
        assert set(mine[1:-2]) == {"response.function_call_arguments.delta"}
    assert kinds.index("response.output_item.done") < max(i for i, k in enumerate(kinds) if k.endswith("added"))
    assert kinds[-1] == "response.completed"
    # The function's result goes back as a function_call_output item and the turn goes on.
    follow = sdk.responses.create(
        model="gpt-4o",
        previous_response_id=final.id,
        input=[{"type": "function_call_output", "call_id": c.call_id, "output": "sunny, 21 °C"} for c in calls],
        tools=TOOLS,
    )
    assert follow.status == "completed" and follow.output_text == recorded_text()


def test_built_in_tools_are_dropped_and_named(server: LiveServer) -> None:
    response = httpx.post(
        server.base_url + "/v1/responses",
        json={"model": "gpt-4o", "input": "Search the web", "tools": [{"type": "web_search"}], "tool_choice": "auto"},
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-ghostgpt-dropped-tools"] == "web_search"
    assert response.json()["tools"] == []


def test_stored_responses_continue_list_and_delete(sdk: OpenAI, server: LiveServer, fake: FakeUpstream) -> None:
    first = sdk.responses.create(model="gpt-4o", input="My name is Ada.", instructions="Be kind.")
    second = sdk.responses.create(model="gpt-4o", input="What is my name?", previous_response_id=first.id)
    sent = fake.requests[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "My name is Ada." and sent[2]["content"] == recorded_text()
    assert "Be kind." not in json.dumps(sent), "instructions are not carried over (as on OpenAI)"
    assert second.previous_response_id == first.id
    assert sdk.responses.retrieve(first.id).output_text == first.output_text
    items = sdk.responses.input_items.list(second.id)
    assert [i.type for i in items.data] == ["message"] and items.data[0].content[0].text == "What is my name?"
    page = sdk.responses.input_items.list(second.id, limit=1, order="asc")
    assert page.has_more is False and len(page.data) == 1
    # Another account cannot see, continue or delete it.
    other = (
        subprocess.run(
            [sys.executable, "manage.py", "create_api_key", "--name", "other"],
            cwd=ROOT,
            env=server.env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    stranger = OpenAI(base_url=server.base_url + "/v1", api_key=other, max_retries=0)
    with pytest.raises(NotFoundError):
        stranger.responses.retrieve(first.id)
    with pytest.raises(NotFoundError):
        stranger.responses.create(model="gpt-4o", input="x", previous_response_id=first.id)
    with pytest.raises(NotFoundError):
        stranger.responses.delete(first.id)
    sdk.responses.delete(first.id)
    with pytest.raises(NotFoundError):
        sdk.responses.retrieve(first.id)
    unstored = sdk.responses.create(model="gpt-4o", input="Forget me.", store=False)
    with pytest.raises(NotFoundError):
        sdk.responses.retrieve(unstored.id)


def test_a_failure_after_the_stream_started_is_a_response_failed_event(server: LiveServer) -> None:
    events = raw_events(server, {"model": "drops", "input": "x"})
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["message"]
    # Every item opened is closed before the failure (Codex waits for each item's done).
    assert kinds.count("response.output_item.added") == kinds.count("response.output_item.done")


@pytest.mark.parametrize(
    "body, param",
    [
        ({"input": "x"}, "model"),
        ({"model": "gpt-4o", "input": 5}, "input"),
        ({"model": "gpt-4o", "input": [{"type": "file_search_call"}]}, "input[0].type"),
        ({"model": "gpt-4o", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "gpt-4o", "input": "x", "store": "yes"}, "store"),
        ({"model": "gpt-4o", "input": "x", "text": {"format": {"type": "xml"}}}, "text.format"),
    ],
)
def test_bad_requests_are_clear_400s(server: LiveServer, body: dict[str, Any], param: str) -> None:
    response = httpx.post(
        server.base_url + "/v1/responses", json=body, headers={"Authorization": f"Bearer {server.api_key}"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_unsupported_tools_drop_lets_a_tool_client_talk_to_a_local_model() -> None:
    # Codex always sends function tools; the embedded model has no function calling. With
    # GHOSTGPT_UNSUPPORTED_TOOLS=drop it is served without them (and says so); by default
    # it is refused with a clear 400.
    tools = [TOOLS[0]]
    chat_tools = [{"type": "function", "function": {k: v for k, v in TOOLS[0].items() if k != "type"}}]
    for policy, status in (("drop", 200), ("refuse", 400)):
        live = LiveServer(env={"GHOSTGPT_UNSUPPORTED_TOOLS": policy})
        try:
            headers = {"Authorization": f"Bearer {live.api_key}"}
            response = httpx.post(
                live.base_url + "/v1/responses",
                json={"model": "ghostgpt", "input": "Hi", "tools": tools, "max_output_tokens": 32},
                headers=headers,
                timeout=60,
            )
            assert response.status_code == status, response.text
            chat = httpx.post(
                live.base_url + "/v1/chat/completions",
                json={
                    "model": "ghostgpt",
                    "messages": [{"role": "user", "content": "Hi"}],
                    "tools": chat_tools,
                    "max_tokens": 32,
                },
                headers=headers,
                timeout=60,
            )
            assert chat.status_code == status, chat.text
            if policy == "drop":
                assert response.headers["x-ghostgpt-dropped-tools"] == "function"
                assert chat.headers["x-ghostgpt-dropped-tools"] == "function"
                assert response.json()["output_text"]
            else:
                assert response.json()["error"]["param"] == "tools"
        finally:
            live.stop()


def test_a_chain_past_the_body_limit_is_refused(sdk: OpenAI, server: LiveServer) -> None:
    # Every stored response keeps its conversation; a chain of large inputs would grow the
    # database quadratically at no cost, so continuing past the body limit is a 400.
    big = "x" * (6 * 1024 * 1024)
    first = sdk.responses.create(model="gpt-4o", input=big)
    second = sdk.responses.create(model="gpt-4o", input=big, previous_response_id=first.id)
    response = httpx.post(
        server.base_url + "/v1/responses",
        json={"model": "gpt-4o", "input": "more", "previous_response_id": second.id},
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=60,
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "previous_response_id"


def test_malformed_ids_and_nul_characters_are_handled(sdk: OpenAI, server: LiveServer) -> None:
    # Found by the fuzz run on PostgreSQL: a NUL in previous_response_id reached SQL (500).
    headers = {"Authorization": f"Bearer {server.api_key}"}
    for bad in ["resp_\x00", "x" * 500, "resp_" + "0" * 47 + "\x00"]:
        response = httpx.post(
            server.base_url + "/v1/responses",
            json={"model": "gpt-4o", "input": "x", "previous_response_id": bad},
            headers=headers,
        )
        assert response.status_code == 404, response.text
    assert httpx.get(server.base_url + "/v1/responses/resp_%00", headers=headers).status_code == 404
    stored = sdk.responses.create(model="gpt-4o", input="a\x00b")  # jsonb refuses U+0000: kept as U+FFFD
    items = sdk.responses.input_items.list(stored.id)
    assert items.data[0].content[0].text == "a\ufffdb"  # type: ignore[union-attr]
