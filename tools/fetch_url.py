"""fetch-url: a page's main text, extracted with trafilatura."""

from __future__ import annotations

from typing import Any

import lxml.etree
import lxml.html
import trafilatura
from readability import Document
from readability.readability import Unparseable

from .base import Progress, ToolError, register
from .fetching import SafeFetcher, refused
from .pdf import extract_pdf_bytes

MAX_URL_LENGTH = 2048


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError):
        return body.decode("utf-8", errors="replace")


def readability_text(html: str) -> str:
    """The main text according to readability-lxml (Mozilla Readability's algorithm)."""
    try:
        summary = Document(html).summary(html_partial=True)
        return " ".join(lxml.html.fromstring(summary).text_content().split())
    except (ValueError, lxml.etree.ParserError, Unparseable):
        return ""


def _html_text(html: str, url: str) -> tuple[str | None, str]:
    """trafilatura first; readability-lxml when it finds nothing; trafilatura's baseline last."""
    text = trafilatura.extract(html, url=url, include_comments=False, favor_recall=True) or ""
    if not text.strip():
        text = readability_text(html)
    if not text.strip():
        _, text, _ = trafilatura.baseline(html)
    metadata = trafilatura.extract_metadata(html, default_url=url)
    return (metadata.title if metadata else None), text.strip()


class FetchUrlTool:
    name = "fetch-url"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        url = params.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ToolError('Send {"url": "https://…"}.', code="missing_url")
        url = url.strip()
        if len(url) > MAX_URL_LENGTH:
            raise ToolError(f"The URL is longer than {MAX_URL_LENGTH} characters.", code="invalid_url")
        if not url.lower().startswith(("http://", "https://")):
            raise refused("Only http and https URLs can be fetched.")
        return {"url": url}

    def run(self, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        page = SafeFetcher().fetch(params["url"])
        progress(60)
        if page.content_type == "application/pdf":
            title, text = None, extract_pdf_bytes(page.body)["text"]
        elif page.content_type == "text/plain":
            title, text = None, _decode(page.body, page.charset).strip()
        else:
            title, text = _html_text(_decode(page.body, page.charset), page.final_url)
        return {
            "url": page.url,
            "final_url": page.final_url,
            "status": page.status,
            "content_type": page.content_type,
            "title": title,
            "text": text,
            "fetched_at": page.fetched_at,
        }


register(FetchUrlTool())
