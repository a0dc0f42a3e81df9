"""Test material made on the spot: loopback HTTP servers and real PDF files."""

from __future__ import annotations

import glob
import io
import os
import tempfile
import threading
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from pypdf import PdfWriter
from pypdf.generic import DictionaryObject, NameObject, StreamObject

Route = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 with a counter of the requests it received."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.hits: list[str] = []
        self.routes = routes  # tests may add routes while the server runs
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits.append(self.path)
                route = owner.routes.get(urlsplit(self.path).path)
                status, headers, body = route(self) if route else (404, {"Content-Type": "text/plain"}, b"nope")
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def redirect_route(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
    target = parse_qs(urlsplit(handler.path).query).get("to", [""])[0]
    return 302, {"Location": target}, b""


def html(body: str) -> Route:
    return lambda _: (200, {"Content-Type": "text/html; charset=utf-8"}, body.encode())


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_pdf(pages: list[str], *, password: str | None = None, title: str = "GhostGPT test") -> bytes:
    """A real PDF whose pages show the given lines of text (Helvetica)."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        content = StreamObject()
        content.set_data(f"BT /F1 12 Tf 72 720 Td ({_escape(text)}) Tj ET".encode("latin-1") if text else b"")
        page[NameObject("/Contents")] = writer._add_object(content)
    writer.add_metadata({"/Title": title})
    if password is not None:
        writer.encrypt(user_password=password, owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def bomb_pdf(decompressed_bytes: int = 300_000_000) -> bytes:
    """One page whose content stream inflates to `decompressed_bytes` (a few hundred KB on disk)."""
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    content = StreamObject()
    compressor = zlib.compressobj(9)
    chunk = b"0" * 1_000_000
    data = b"".join(compressor.compress(chunk) for _ in range(decompressed_bytes // len(chunk))) + compressor.flush()
    content._data = data
    content[NameObject("/Filter")] = NameObject("/FlateDecode")
    page[NameObject("/Contents")] = writer._add_object(content)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def upload_files() -> set[str]:
    """Temporary upload files on disk now (the view's and the run's are both removed when
    their request and job end; compare before and after)."""
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "ghostgpt-upload-*")))
