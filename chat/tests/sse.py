"""Read an SSE response the way strict clients do, checking the envelope rules."""

from __future__ import annotations

import json
from typing import Any

import httpx


def read_sse(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON payloads of a stream that must end with `data: [DONE]`.

    Only `data:` lines, `:` comments and blank lines are allowed: `id:`/`retry:` lines or
    empty `data:` lines crash openai-python.
    """
    payloads: list[dict[str, Any]] = []
    done = False
    for line in response.iter_lines():
        if not line or line.startswith(":"):
            continue
        assert line.startswith("data: "), f"non-data SSE line: {line!r}"
        data = line[len("data: ") :]
        assert data.strip(), "empty data line"
        assert not done, "data after [DONE]"
        if data == "[DONE]":
            done = True
            continue
        payloads.append(json.loads(data))
    assert done, "stream did not end with data: [DONE]"
    return payloads
