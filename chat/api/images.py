"""Images for models that cannot see: each image becomes text in the prompt, clearly marked —
its basic facts (format, size) and the text RapidOCR finds in it. RapidOCR's ONNX models
ship inside the `rapidocr-onnxruntime` wheel: nothing is downloaded at run time.

Image URLs are `data:image/…;base64,…` or http(s) URLs fetched through the SafeFetcher.
Bad images are the client's error (400/413) and lose nothing else.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from django.conf import settings

from chat.backends.base import GenerationRequest
from chat.executors import BoundedExecutor, Busy, fetch_pool, ocr_pool

from .errors import ApiError

logger = logging.getLogger(__name__)

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp")
OCR_MAX_SIDE = 1600  # larger images are scaled down before OCR (speed; text stays legible)
_engine: Any = None
_engine_lock = threading.Lock()
T = TypeVar("T")
_ocr_lock = threading.Lock()  # one OCR at a time per process: it uses every core


def has_images(request: GenerationRequest) -> bool:
    return any(message.images for message in request.messages)


async def images_as_text(request: GenerationRequest) -> GenerationRequest:
    """The request with every image replaced by a text description in its message."""
    _check_count(request)
    messages, number = [], 0
    for i, message in enumerate(request.messages):
        if not message.images:
            messages.append(message)
            continue
        notes = []
        for url in message.images:
            number += 1
            param = f"{message.origin or f'messages[{i}]'}.content"
            data = await _off_loop(fetch_pool, _load, url, param)
            notes.append(await _off_loop(ocr_pool, describe, data, number, param))
        content = "\n\n".join(part for part in (message.content, *notes) if part)
        messages.append(replace(message, content=content, images=()))
    return replace(request, messages=tuple(messages))


async def images_inline(request: GenerationRequest) -> GenerationRequest:
    """For a model that sees: every image as a checked `data:` URL. http(s) images are
    fetched here, through the SafeFetcher, so no upstream is ever asked to fetch a URL a
    client chose; each one must be an image Pillow can read, within the size limits."""
    _check_count(request)
    messages = []
    for i, message in enumerate(request.messages):
        if message.images:
            param = f"{message.origin or f'messages[{i}]'}.content"
            urls = [await _off_loop(fetch_pool, _as_data_url, url, param) for url in message.images]
            message = replace(message, images=tuple(urls))
        messages.append(message)
    return replace(request, messages=tuple(messages))


async def _off_loop(pool: BoundedExecutor, function: Callable[..., T], *args: Any) -> T:
    """Fetching and OCR on bounded pools of their own (never the loop's default executor,
    which the embedded model's tokenizer uses); 503 when a pool is full."""
    try:
        return await pool.run(function, *args)
    except Busy as exc:
        raise ApiError(
            503, str(exc), error_type="service_unavailable_error", code="server_overloaded", retry_after=2
        ) from None


def _check_count(request: GenerationRequest) -> None:
    limit = settings.GHOSTGPT["IMAGES_PER_REQUEST"]
    count = sum(len(m.images) for m in request.messages)
    if count > limit:
        raise ApiError(400, f"At most {limit} images per request; this one has {count}.", param="messages")


def _as_data_url(url: str, param: str) -> str:
    from PIL import Image, UnidentifiedImageError

    data = _load(url, param)
    Image.MAX_IMAGE_PIXELS = settings.GHOSTGPT["IMAGE_MAX_PIXELS"]
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_pixels(image, param)
            mime = Image.MIME.get(image.format or "", "")
    except Image.DecompressionBombError:
        raise ApiError(413, f"An image in '{param}' has too many pixels.", param=param) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise ApiError(400, f"An image in '{param}' is not an image GhostGPT can read.", param=param) from None
    if mime not in IMAGE_TYPES:
        raise ApiError(400, f"An image in '{param}' is {mime or 'of an unknown type'}; send PNG, JPEG, WebP or GIF.")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _load(url: str, param: str) -> bytes:
    limit = settings.GHOSTGPT["IMAGE_MAX_BYTES"]
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if ";base64" not in header:
            raise ApiError(400, f"Invalid image in '{param}': data URLs must be base64.", param=param)
        if len(payload) * 3 // 4 > limit:
            raise ApiError(413, f"An image in '{param}' is larger than {limit} bytes.", param=param)
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, f"Invalid image in '{param}': the base64 data is damaged.", param=param) from None
    from tools.base import ToolError
    from tools.fetching import SafeFetcher

    try:
        page = SafeFetcher().fetch(url, accept=IMAGE_TYPES)
    except ToolError as exc:
        raise ApiError(400, f"Could not fetch the image in '{param}': {exc.message}", param=param) from None
    if len(page.body) > limit:
        raise ApiError(413, f"An image in '{param}' is larger than {limit} bytes.", param=param)
    return page.body


def describe(data: bytes, number: int, param: str = "messages") -> str:
    """`[Image N: PNG, 640×160 pixels. …]` with the text OCR found, for a text-only model."""
    facts, lines = read_image(data, number, param)
    head = f"[Image {number}: {facts}. This model cannot see images; GhostGPT read the image for it."
    if not lines:
        return head + " No text was found in it.]"
    text = "\n".join(lines)
    return f'{head} Text found in it (OCR):\n"""\n{text}\n"""\n]'


def read_image(data: bytes, number: int, param: str = "messages") -> tuple[str, list[str]]:
    """An image's facts ("PNG, 640×160 pixels") and the lines of text OCR finds in it."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = settings.GHOSTGPT["IMAGE_MAX_PIXELS"]
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_pixels(image, param)
            facts = f"{image.format}, {image.width}×{image.height} pixels"
            image.load()
            prepared = _for_ocr(image)
    except Image.DecompressionBombError:
        raise ApiError(413, f"Image {number} has too many pixels.", param=param) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise ApiError(400, f"Image {number} in '{param}' is not an image GhostGPT can read.", param=param) from None
    return facts, _ocr(prepared)


def _check_pixels(image: Any, param: str) -> None:
    """413 from the header's width × height, before anything is decoded. Pillow itself only
    warns between 1× and 2× MAX_IMAGE_PIXELS and would decode such an image."""
    limit = settings.GHOSTGPT["IMAGE_MAX_PIXELS"]
    pixels = image.width * image.height
    if pixels > limit:
        raise ApiError(413, f"An image in '{param}' has {pixels} pixels; at most {limit} are accepted.", param=param)


def _for_ocr(image: Any) -> bytes:
    from PIL import Image

    frame = image.convert("RGB")
    if max(frame.size) > OCR_MAX_SIDE:
        frame.thumbnail((OCR_MAX_SIDE, OCR_MAX_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    frame.save(buffer, "PNG")
    return buffer.getvalue()


def _ocr(png: bytes) -> list[str]:
    engine = _ocr_engine()
    with _ocr_lock:
        result, _ = engine(png)
    return [line[1] for line in result or [] if line[1].strip()]


def _ocr_engine() -> Any:
    """RapidOCR, loaded once per process on first use (~0.7 s)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            from rapidocr_onnxruntime import RapidOCR

            _engine = RapidOCR()
        return _engine
