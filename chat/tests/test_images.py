"""Images sent to a text-only model: parsed, described in text (facts + OCR), or refused
clearly — through the parser, the describer, and a live server with the official SDK."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from openai import BadRequestError, OpenAI
from PIL import Image, ImageDraw, ImageFile, ImageFont

from chat.api.errors import ApiError
from chat.api.images import _as_data_url, describe
from chat.api.params import parse_chat

POLICY = {
    "SYSTEM_PROMPT": "",
    "CLIENT_SYSTEM": "append",
    "REJECTED_PARAMS": [],
    "MAX_TOKENS_MIN": 1,
    "MAX_TOKENS_MAX": 64,
    "MAX_N": 2,
}


def picture(text: str = "", size: tuple[int, int] = (640, 160), kind: str = "PNG") -> bytes:
    image = Image.new("RGB", size, "white")
    if text:
        ImageDraw.Draw(image).text((20, 50), text, fill="black", font=ImageFont.load_default(size=40))
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def data_url(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def ask(*parts: dict[str, Any], role: str = "user") -> Any:
    return parse_chat({"model": "ghostgpt", "messages": [{"role": role, "content": list(parts)}]}, POLICY)


def test_image_parts_are_parsed_in_every_accepted_form() -> None:
    url = data_url(picture())
    parsed = ask(
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
        {"type": "image_url", "image_url": "https://example.com/cat.png"},
        {"type": "input_image", "image_url": url},
    )
    message = parsed.generation.messages[-1]
    assert message.content == "What is this?" and message.images == (url, "https://example.com/cat.png", url)


@pytest.mark.parametrize(
    ("part", "role", "param"),
    [
        ({"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}, "user", "messages[0].content[0].image_url.url"),
        ({"type": "image_url", "image_url": {"url": "data:text/html;base64,PGI+"}}, "user", "messages[0].content[0]"),
        ({"type": "image_url"}, "user", "messages[0].content[0].image_url.url"),
        ({"type": "image_url", "image_url": {"url": "https://x/a.png"}}, "assistant", "messages[0]"),
    ],
)
def test_bad_image_parts_are_400_naming_the_part(part: dict[str, Any], role: str, param: str) -> None:
    with pytest.raises(ApiError) as caught:
        ask(part, role=role)
    assert caught.value.status == 400 and caught.value.param is not None and caught.value.param.startswith(param)


@pytest.mark.django_db
def test_text_in_an_image_is_read_and_marked_as_such() -> None:
    note = describe(picture("Ghost ships sail at 7 pm"), 1)
    assert note.startswith("[Image 1: PNG, 640×160 pixels. This model cannot see images")
    assert "Ghost ships sail at 7" in note and "(OCR)" in note
    blank = describe(picture(kind="JPEG"), 2)
    assert blank.startswith("[Image 2: JPEG, 640×160 pixels.") and "No text was found" in blank


@pytest.mark.django_db
def test_unreadable_and_oversized_images_are_client_errors(settings: Any) -> None:
    with pytest.raises(ApiError) as garbage:
        describe(b"\x89PNG not really", 1)
    assert garbage.value.status == 400
    settings.GHOSTGPT = {**settings.GHOSTGPT, "IMAGE_MAX_PIXELS": 10_000}
    with pytest.raises(ApiError) as bomb:
        describe(picture(size=(1000, 1000)), 1)
    assert bomb.value.status == 413


@pytest.mark.django_db
@pytest.mark.parametrize("check", ["describe", "inline"])
def test_an_image_between_one_and_two_times_the_pixel_limit_is_refused_before_decoding(
    settings: Any, monkeypatch: pytest.MonkeyPatch, check: str
) -> None:
    # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; the header's size must decide.
    settings.GHOSTGPT = {**settings.GHOSTGPT, "IMAGE_MAX_PIXELS": 100_000}
    data = picture(size=(500, 300))  # 150,000 pixels: 1.5x the limit
    decoded: list[object] = []
    original_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or original_load(self))
    with pytest.raises(ApiError) as caught:
        if check == "describe":
            describe(data, 1)
        else:
            _as_data_url(data_url(data), "messages[0].content")
    assert caught.value.status == 413 and "150000 pixels" in caught.value.message
    assert decoded == []  # refused from the header: not one pixel decoded


def test_the_sdk_sends_images_to_the_embedded_model(client: OpenAI) -> None:
    image = data_url(picture("Ghost ships sail at 7 pm"))
    plain = client.chat.completions.create(
        model="ghostgpt", max_tokens=32, messages=[{"role": "user", "content": "Read the image."}]
    )
    reply = client.chat.completions.create(
        model="ghostgpt",
        max_tokens=32,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Read the image."},
                    {"type": "image_url", "image_url": {"url": image}},
                ],
            }
        ],
    )
    assert reply.choices[0].message.content is not None
    assert reply.usage is not None and plain.usage is not None
    assert reply.usage.prompt_tokens > plain.usage.prompt_tokens + 20  # the description went into the prompt


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("data:image/png;base64,@@@not-base64@@@", 400, "damaged"),
        (data_url(b"GIF89a but not an image"), 400, "not an image"),
        ("http://127.0.0.1:9/secret.png", 400, "Could not fetch"),
        ("http://169.254.169.254/latest/meta-data.png", 400, "Could not fetch"),
    ],
)
def test_bad_images_are_refused_clearly(client: OpenAI, url: str, status: int, words: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        client.chat.completions.create(
            model="ghostgpt",
            max_tokens=32,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
        )
    assert caught.value.status_code == status and words in str(caught.value)


def test_too_many_images_are_refused(client: OpenAI) -> None:
    image = {"type": "image_url", "image_url": {"url": data_url(picture())}}
    with pytest.raises(BadRequestError) as caught:
        client.chat.completions.create(
            model="ghostgpt", max_tokens=32, messages=[{"role": "user", "content": [image] * 9}]
        )
    assert "At most 8 images" in str(caught.value)
