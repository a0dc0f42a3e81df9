"""What a request may cost before any model is called, and what it is billed after."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from chat.api.auth import Principal
from chat.api.metering import Meter
from chat.api.params import parse_chat
from chat.backends.base import GenerationRequest, SamplingParams, Usage
from chat.billing.estimate import FLOOR_BYTES_PER_TOKEN, prompt_bound, prompt_floor
from chat.billing.pricing import Price
from chat.billing.ratelimit import Limits

POLICY = {
    "SYSTEM_PROMPT": "",
    "CLIENT_SYSTEM": "append",
    "REJECTED_PARAMS": [],
    "MAX_TOKENS_MIN": 1,
    "MAX_TOKENS_MAX": 4096,
    "MAX_N": 2,
}
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


def request(**body: object):  # type: ignore[no-untyped-def]
    return parse_chat({"model": "m", "max_tokens": 16, **body}, POLICY).generation


def tool(i: int) -> dict[str, object]:
    properties = {f"field_{j}": {"type": "string", "description": "x" * 200} for j in range(20)}
    schema = {"type": "object", "properties": properties}
    return {"type": "function", "function": {"name": f"tool_{i}", "description": "d" * 300, "parameters": schema}}


def test_the_bound_covers_tools_images_calls_and_every_message() -> None:
    # Before: 128 tool schemas and 8 images on a near-empty prompt reserved ~32 tokens.
    tools = [tool(i) for i in range(128)]
    images = [{"type": "image_url", "image_url": {"url": PIXEL}} for _ in range(8)]
    generation = request(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, *images]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "tool_1", "arguments": '{"a": "' + "y" * 1000 + '"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "z" * 500},
        ],
        tools=tools,
    )
    bound = prompt_bound(generation, image_tokens=1445)
    schemas = sum(len(json.dumps(t["function"]["parameters"])) for t in tools)  # type: ignore[index]
    assert bound > schemas + 8 * 1445 + 1000 + 500
    assert prompt_bound(request(messages=[{"role": "user", "content": "héllo"}]), image_tokens=0) >= 6


def meter(**body: object) -> Meter:
    principal = Principal(key_id=1, account_id=1, allowed_models=(), limits=Limits("k", None, None))
    return Meter(
        principal=principal,
        model="m",
        price=Price(Decimal(1), Decimal(2)),
        request_id="r",
        request=request(messages=[{"role": "user", "content": "Say hi."}], **body),
    )


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        (Usage(-500, -7), (0, 0)),  # negative counts never become a credit
        (Usage(10**12, 10**12), ("bound", 32)),  # absurd counts are capped at what the request allows
        (Usage(5, 3), (5, 3)),
    ],
)
def test_reported_usage_is_clamped_to_what_the_request_could_produce(reported: Usage, expected: tuple) -> None:
    billing = meter(n=2)
    billed = billing.billable(reported, delivered_tokens=0)
    prompt = billing.prompt_bound if expected[0] == "bound" else expected[0]
    assert (billed.prompt_tokens, billed.completion_tokens) == (prompt, expected[1])
    assert billing.cost_fields(reported)["total_cost"] >= 0


def test_without_a_report_the_delivered_bound_is_billed() -> None:
    billing = meter()
    billed = billing.billable(None, delivered_tokens=12)
    assert billed == Usage(billing.prompt_bound, 12, estimated=True)
    assert billing.billable(None, delivered_tokens=10**6).completion_tokens == 16  # never beyond max_tokens


def test_under_reported_usage_is_billed_at_least_the_floor() -> None:
    # An upstream or agent that streams text and then reports {0, 0} does not make it free:
    # the prompt and the delivered text are billed at least at FLOOR_BYTES_PER_TOKEN.
    prompt = "word " * 800  # 4,000 bytes
    billing = meter(max_tokens=1000)
    billing.prompt_bound = prompt_bound(request(messages=[{"role": "user", "content": prompt}]), image_tokens=0)
    billing.prompt_floor = prompt_floor(request(messages=[{"role": "user", "content": prompt}]))
    assert billing.prompt_floor == 4000 // FLOOR_BYTES_PER_TOKEN
    billed = billing.billable(Usage(0, 0), delivered_tokens=1600)  # 1,600 bytes streamed
    assert billed == Usage(500, 1600 // FLOOR_BYTES_PER_TOKEN, estimated=True)
    honest = billing.billable(Usage(900, 400), delivered_tokens=1600)  # above both floors: as reported
    assert honest == Usage(900, 400)
    # The embedded model's own count is exact: its floor is the count itself.
    local = meter(max_tokens=64)
    local.counted_locally, local.prompt_tokens = True, 7
    assert local.billable(Usage(0, 0), delivered_tokens=5) == Usage(7, 5, estimated=True)


def test_the_bound_covers_the_tokens_a_tokenizer_wraps_each_prompt_in() -> None:
    # [CLS] … [SEP] around every embedding input, BOS before every legacy prompt of ids.
    inputs = GenerationRequest(model="m", sampling=SamplingParams(max_tokens=0), prompts=("a",) * 2048)
    assert prompt_bound(inputs, image_tokens=0) >= 3 * 2048
    ids = GenerationRequest(model="m", sampling=SamplingParams(max_tokens=1), prompts=((1, 2, 3),) * 4)
    assert prompt_bound(ids, image_tokens=0) >= 4 * 4
