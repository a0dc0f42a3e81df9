"""PDF extract: text per page with pypdf, page-marked, under size/page/time limits.

Decompression bombs stop at pypdf's own output limits (its FlateDecode cap) and surface
as a 422, never as a worker that runs out of memory.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError, PdfReadError, PdfStreamError

from .base import Progress, ToolError, register

PDF_MAGIC = b"%PDF-"
UNREADABLE = (
    PdfReadError,
    PdfStreamError,
    LimitReachedError,
    ValueError,
    KeyError,
    TypeError,
    AssertionError,
    IndexError,
    RecursionError,
    OverflowError,
    ZeroDivisionError,
)


def page_marker(number: int) -> str:
    return f"--- Page {number} ---"


def _open(source: BinaryIO | Path) -> PdfReader:
    try:
        reader = PdfReader(source)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ToolError("The PDF is password-protected.", status=422, code="pdf_encrypted")
        return reader
    except ToolError:
        raise
    except (FileNotDecryptedError, DependencyError):
        raise ToolError("The PDF is password-protected.", status=422, code="pdf_encrypted") from None
    except UNREADABLE:
        raise ToolError(
            "The file is not a readable PDF (it is damaged or truncated).", status=422, code="pdf_unreadable"
        ) from None


def _metadata(reader: PdfReader) -> dict[str, str]:
    try:
        info: Any = reader.metadata or {}
        return {str(k).lstrip("/").lower(): str(v) for k, v in info.items() if isinstance(v, str | int | float)}
    except UNREADABLE:
        return {}


def extract(reader: PdfReader, progress: Progress = lambda _: None) -> dict[str, Any]:
    limits = settings.TOOLS
    try:
        count = len(reader.pages)
    except UNREADABLE:
        raise ToolError("The file is not a readable PDF.", status=422, code="pdf_unreadable") from None
    if count > limits["PDF_MAX_PAGES"]:
        raise ToolError(
            f"The PDF has {count} pages; at most {limits['PDF_MAX_PAGES']} are read.", status=413, code="too_many_pages"
        )
    started = time.monotonic()
    pages_text = []
    for number, page in enumerate(reader.pages, start=1):
        if time.monotonic() - started > limits["PDF_MAX_SECONDS"]:
            raise ToolError("Reading the PDF took too long.", status=422, code="pdf_timeout")
        try:
            text = page.extract_text() or ""
            if not text:  # extract_text() hides a stream cut off at pypdf's limits: look again
                contents = page.get_contents()
                if contents is not None:
                    contents.get_data()
            pages_text.append(text)
        except UNREADABLE:
            raise ToolError(
                f"Page {number} of the PDF cannot be read (damaged, or beyond the decompression limits).",
                status=422,
                code="pdf_unreadable",
            ) from None
        progress(int(number * 100 / count))
    text = "\n\n".join(f"{page_marker(i)}\n{t.strip()}" for i, t in enumerate(pages_text, start=1))
    return {"pages": count, "text": text, "pages_text": pages_text, "metadata": _metadata(reader)}


def extract_pdf_bytes(data: bytes) -> dict[str, Any]:
    if not data.startswith(PDF_MAGIC):
        raise ToolError("That is not a PDF file.", status=415, code="not_a_pdf")
    return extract(_open(io.BytesIO(data)))


class PdfExtractTool:
    name = "pdf-extract"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        path = Path(params["path"])
        with path.open("rb") as handle:
            if not handle.read(1024).lstrip().startswith(PDF_MAGIC):
                raise ToolError("That is not a PDF file.", status=415, code="not_a_pdf")
        return params

    def run(self, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        return extract(_open(params["file"]), progress)  # the upload, in memory (tools.services)


register(PdfExtractTool())
