"""A file's text as sections (documents.passages.Section: text, page, heading), by kind.

PDF: one section per page (pypdf, under the PDF tool's limits; password-protected and
damaged files are clear errors). DOCX: paragraphs and tables, a new section at each
heading (python-docx). Markdown: a section per heading. Plain text: one section. CSV: rows
as "column: value" lines, 50 rows a section. HTML: the page's main text (trafilatura, as
fetch-url reads pages). Images: the text OCR finds (RapidOCR, as for text-only models).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable
from typing import IO, Any

from tools.base import ToolError

from .passages import Section

CSV_ROWS_PER_SECTION = 50
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")

# What a file is, from its name and type; None: not a document GhostGPT reads.
KINDS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".csv": "csv",
    ".html": "html",
    ".htm": "html",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".webp": "image",
    ".gif": "image",
}
CONTENT_TYPES = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/csv": "csv",
    "text/html": "html",
    "image/png": "image",
    "image/jpeg": "image",
    "image/webp": "image",
    "image/gif": "image",
}
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
MEDIA_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "text": "text/plain; charset=utf-8",
    "markdown": "text/markdown; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
}


def kind_of(name: str, content_type: str) -> str | None:
    suffix = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    return KINDS.get(suffix) or CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ToolError("The file is not UTF-8 text.", status=422, code="not_text") from None


def _pdf(file: IO[bytes], progress: Callable[[int], None]) -> list[Section]:
    from tools.pdf import _open, extract

    result = extract(_open(file), progress)  # type: ignore[arg-type]
    return [Section(text, page=number) for number, text in enumerate(result["pages_text"], start=1)]


def _docx(file: IO[bytes]) -> list[Section]:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(file)
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError):
        raise ToolError(
            "The file is not a readable DOCX (damaged, or not Word).", status=422, code="docx_unreadable"
        ) from None
    sections: list[Section] = []
    heading, lines = "", list[str]()
    for block in document.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = Paragraph(block, document)
            text = paragraph.text.strip()
            style = (paragraph.style.name if paragraph.style is not None else "") or ""
            if text and style.lower().startswith(("heading", "title")):
                if lines:
                    sections.append(Section("\n\n".join(lines), heading=heading))
                heading, lines = text[:300], []
            elif text:
                lines.append(text)
        elif tag == "tbl":
            table = Table(block, document)
            for row in table.rows:
                cells = [cell.text.strip() for cell in row.cells]
                if any(cells):
                    lines.append(" | ".join(cells) + ".")
    if lines:
        sections.append(Section("\n\n".join(lines), heading=heading))
    return sections


def _markdown(text: str) -> list[Section]:
    sections: list[Section] = []
    heading, lines = "", list[str]()
    for line in text.splitlines():
        found = _MD_HEADING.match(line)
        if found:
            if any(part.strip() for part in lines):
                sections.append(Section("\n".join(lines), heading=heading))
            heading, lines = found.group(2)[:300], []
        else:
            lines.append(line)
    if any(part.strip() for part in lines):
        sections.append(Section("\n".join(lines), heading=heading))
    return sections


def _csv(text: str) -> list[Section]:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ToolError(f"The CSV cannot be read: {exc}.", status=422, code="csv_unreadable") from None
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    sections = []
    for start in range(0, len(body), CSV_ROWS_PER_SECTION):
        chunk = body[start : start + CSV_ROWS_PER_SECTION]
        lines = [
            "; ".join(f"{name}: {value}" for name, value in zip(header, row, strict=False) if value.strip()) + "."
            for row in chunk
        ]
        heading = f"Rows {start + 1}–{start + len(chunk)}"
        sections.append(Section("\n\n".join(lines), heading=heading))
    return sections


def _html(text: str, url: str) -> list[Section]:
    from tools.fetch_url import _html_text

    title, body = _html_text(text, url)
    return [Section(body, heading=(title or "")[:300])] if body else []


def _image(data: bytes) -> list[Section]:
    from chat.api.errors import ApiError
    from chat.api.images import read_image

    try:
        _, lines = read_image(data, 1, "file")
    except ApiError as exc:
        raise ToolError(exc.message, status=exc.status, code="image_unreadable") from None
    return [Section("\n".join(lines))] if lines else []


def sections_of(kind: str, file: IO[bytes], *, url: str = "", progress: Callable[[int], None]) -> list[Section]:
    """The file's sections; ToolError (422) for a file that cannot be read as `kind`."""
    if kind == "pdf":
        return _pdf(file, progress)
    if kind == "docx":
        return _docx(file)
    data: Any = file.read()
    if kind == "image":
        return _image(data)
    text = _text(data)
    if kind == "markdown":
        return _markdown(text)
    if kind == "csv":
        return _csv(text)
    if kind == "html":
        return _html(text, url)
    return [Section(text)]
