"""/v1/embeddings against a live server with the embedded all-MiniLM-L6-v2: openai-python
(its default base64 encoding and float), every input form, `dimensions`, errors, costs —
and quality: on a small labelled set a paraphrase ranks above an unrelated sentence."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from openai import BadRequestError, OpenAI

from .fake_upstream import FakeUpstream, fake_vector
from .live import LiveServer
from .openapi import assert_matches

MODEL = "all-MiniLM-L6-v2"
# (sentence, its paraphrase, an unrelated sentence)
LABELLED = [
    ("The cat sat on the mat.", "A cat was sitting on the rug.", "Interest rates rose sharply this quarter."),
    ("How do I reset my password?", "I forgot my password, how can I change it?", "The volcano erupted overnight."),
    (
        "The train to Paris leaves at noon.",
        "At 12 o'clock the Paris train departs.",
        "She plays the violin beautifully.",
    ),
    ("Water boils at 100 degrees Celsius.", "At 100 °C water starts to boil.", "My favourite football team lost."),
    ("He bought a new laptop yesterday.", "Yesterday he purchased a new notebook computer.", "Tulips bloom in spring."),
    (
        "The meeting was postponed until Friday.",
        "They moved the meeting to Friday.",
        "Sharks have several rows of teeth.",
    ),
    ("This soup is too salty.", "There is too much salt in this soup.", "The rocket reached orbit."),
    ("Please close the window, it's cold.", "It is chilly, could you shut the window?", "Stock markets closed higher."),
]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = LiveServer()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def sdk(server: LiveServer) -> OpenAI:
    # Not in strict mode: openai-python asks for base64 by default and decodes it after its
    # validation, which in strict mode expects the list (the raw bodies are checked against
    # the official spec instead).
    return OpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0)


def vectors(sdk: OpenAI, texts: list[str], **extra: object) -> np.ndarray:
    reply = sdk.embeddings.create(model=MODEL, input=texts, **extra)  # type: ignore[arg-type]
    return np.array([item.embedding for item in sorted(reply.data, key=lambda d: d.index)])


def test_the_sdk_gets_unit_vectors_in_both_encodings(sdk: OpenAI, server: LiveServer) -> None:
    as_base64 = vectors(sdk, ["hello world", "ghosts"])  # openai-python asks for base64 by default
    as_float = vectors(sdk, ["hello world", "ghosts"], encoding_format="float")
    assert as_base64.shape == (2, 384) and np.allclose(np.linalg.norm(as_base64, axis=1), 1.0, atol=1e-4)
    assert np.allclose(as_base64, as_float, atol=1e-6)
    raw = httpx.post(
        server.base_url + "/v1/embeddings",
        json={"model": MODEL, "input": "hello world", "dimensions": 384},
        headers={"Authorization": f"Bearer {server.api_key}"},
    ).json()
    assert_matches("CreateEmbeddingResponse", raw)
    assert raw["usage"]["prompt_tokens"] == raw["usage"]["total_tokens"] == 4  # [CLS] hello world [SEP]
    assert "total_cost" in raw["usage"]


def test_every_input_is_billed_with_its_cls_and_sep(server: LiveServer) -> None:
    # ["a"] x 2048 reads 6,144 tokens ([CLS] a [SEP] each): the bound must not cap it at 2,064.
    raw = httpx.post(
        server.base_url + "/v1/embeddings",
        json={"model": MODEL, "input": ["a"] * 2048, "encoding_format": "base64"},
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=120,
    ).json()
    assert raw["usage"]["prompt_tokens"] == 3 * 2048, raw["usage"]


def test_token_id_inputs_match_their_text(sdk: OpenAI) -> None:
    text = vectors(sdk, ["hello world"], encoding_format="float")
    ids = vectors(sdk, [[7592, 2088]], encoding_format="float")  # WordPiece ids of "hello world"
    single = sdk.embeddings.create(model=MODEL, input=[7592, 2088], encoding_format="float").data[0].embedding
    assert np.allclose(text, ids, atol=1e-5) and np.allclose(text[0], single, atol=1e-5)


def test_a_paraphrase_ranks_above_an_unrelated_sentence(sdk: OpenAI) -> None:
    flat = [s for triple in LABELLED for s in triple]
    found = vectors(sdk, flat).reshape(len(LABELLED), 3, 384)
    for (anchor, paraphrase, unrelated), (text, _, _) in zip(found, LABELLED, strict=True):
        assert anchor @ paraphrase > anchor @ unrelated + 0.2, text


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": MODEL, "input": ""}, "input"),
        ({"model": MODEL, "input": []}, "input"),
        ({"model": MODEL, "input": [["x"]]}, "input"),
        ({"model": MODEL, "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": MODEL, "input": "x", "dimensions": 128}, "dimensions"),
        ({"model": MODEL, "input": [[10**9]]}, "input"),
        ({"model": "ghostgpt", "input": "x"}, "model"),
        ({"input": "x"}, "model"),
    ],
)
def test_bad_requests_are_400_naming_the_field(server: LiveServer, body: dict[str, object], param: str) -> None:
    response = httpx.post(
        server.base_url + "/v1/embeddings", json=body, headers={"Authorization": f"Bearer {server.api_key}"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_chat_with_the_embedding_model_is_a_clear_400(sdk: OpenAI) -> None:
    with pytest.raises(BadRequestError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "embedding model" in str(caught.value)
    assert MODEL in {m.id for m in sdk.models.list().data}


def test_routed_upstreams_serve_embeddings_billed_by_their_count(fake: FakeUpstream) -> None:
    routes = {
        "upstreams": {
            "ok": {"base_url": f"{fake.url}/ok/v1", "api_key": "sk-up"},
            "down": {"base_url": f"{fake.url}/fail500/v1", "api_key": "sk-up"},
            "google": {"kind": "gemini", "base_url": f"{fake.url}/gemini/v1beta", "api_key": "g-up"},
        },
        "models": {
            "text-embedding-3-small": {
                "embeddings": True,
                "deployments": [{"upstream": "down"}, {"upstream": "ok", "priority": 1}],
            },
            "gemini-embedding": {"embeddings": True, "deployments": [{"upstream": "google", "model": "embed-1"}]},
        },
    }
    live = LiveServer(routes=routes)
    try:
        sdk = OpenAI(base_url=live.base_url + "/v1", api_key=live.api_key, max_retries=0)
        reply = sdk.embeddings.create(model="text-embedding-3-small", input=["one two three", "four"])
        expected = np.array([fake_vector("one two three"), fake_vector("four")])
        assert np.allclose([d.embedding for d in reply.data], expected, atol=1e-6)
        assert reply.usage.prompt_tokens == 4  # the upstream's count
        sent = fake.requests[-1]
        assert sent["path"] == "/ok/v1/embeddings" and sent["body"]["encoding_format"] == "base64"
        assert [r["mode"] for r in fake.requests[-2:]] == ["fail500", "ok"], "failed over from the broken deployment"
        # OpenAI's largest batch: the upstream's answer (~200 KB) arrives over several reads
        # and is read whole.
        texts = [f"input number {i}" for i in range(2048)]
        batch = sdk.embeddings.create(model="text-embedding-3-small", input=texts)
        assert [d.index for d in batch.data] == list(range(2048))
        assert np.allclose(batch.data[-1].embedding, fake_vector(texts[-1]), atol=1e-6)
        raw = httpx.post(
            live.base_url + "/v1/embeddings",
            json={"model": "text-embedding-3-small", "input": "x y", "encoding_format": "float"},
            headers={"Authorization": f"Bearer {live.api_key}"},
        ).json()
        assert_matches("CreateEmbeddingResponse", raw)
        gemini = sdk.embeddings.create(model="gemini-embedding", input=["one two three"])
        assert np.allclose(gemini.data[0].embedding, fake_vector("one two three"), atol=1e-6)
        assert fake.requests[-1]["path"] == "/gemini/v1beta/models/embed-1:batchEmbedContents"
        assert gemini.usage.prompt_tokens > 0  # Gemini reports no count: the byte bound is billed
        chat_only = httpx.post(
            live.base_url + "/v1/embeddings",
            json={"model": "ghostgpt", "input": "x"},
            headers={"Authorization": f"Bearer {live.api_key}"},
        )
        assert chat_only.status_code == 400
    finally:
        live.stop()
