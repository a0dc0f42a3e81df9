"""SafeFetcher: the one way anything in GhostGPT fetches a URL a user gave it.

Rules, checked on the first URL and again on every redirect:
- http/https only, no credentials in the URL, ports from FETCH_ALLOWED_PORTS (80, 443);
- the host is resolved once and every address must be global: loopback, private,
  link-local (169.254.169.254), CGNAT (100.64/10), unspecified, multicast, reserved, and
  IPv6 forms that embed such an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo) are refused;
- the connection goes to the checked address (Host header and TLS SNI keep the name), so
  a second DNS answer cannot rebind it;
- at most FETCH_MAX_REDIRECTS redirects, FETCH_MAX_BYTES of body (identity encoding: no
  decompression bombs), FETCH_DEADLINE_SECONDS of wall clock for everything (DNS, connect, redirects, headers, body:
  a server that trickles bytes cannot hold a fetch longer), and only allowed content types.
Tests may allow exact "ip:port" loopback targets through FETCH_ALLOW (empty by default).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import httpx
from django.conf import settings

from .base import ToolError

ALLOWED_TYPES = ("text/html", "text/plain", "application/xhtml+xml", "application/pdf")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
USER_AGENT = "GhostGPT-fetcher/1.0 (+https://github.com/ghostgpt)"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_resolvers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ghostgpt-dns")


def refused(message: str, code: str = "url_not_allowed") -> ToolError:
    return ToolError(message, status=400, code=code)


@dataclass(frozen=True, slots=True)
class FetchedPage:
    url: str
    final_url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    fetched_at: str


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in an IPv6 one (mapped, NAT64, 6to4, Teredo), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    return None


def is_public(address: Address) -> bool:
    inner = embedded_ipv4(address)
    if inner is not None and not is_public(inner):
        return False
    return address.is_global and not address.is_multicast


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


class SafeFetcher:
    def __init__(self) -> None:
        config = settings.TOOLS
        self.max_bytes: int = config["FETCH_MAX_BYTES"]
        self.deadline: float = config["FETCH_DEADLINE_SECONDS"]
        self.max_redirects: int = config["FETCH_MAX_REDIRECTS"]
        self.ports: set[int] = set(config["FETCH_ALLOWED_PORTS"])
        self.allow: set[str] = set(config["FETCH_ALLOW"])

    def fetch(
        self, url: str, *, accept: tuple[str, ...] = ALLOWED_TYPES, headers: dict[str, str] | None = None
    ) -> FetchedPage:
        """`headers` (e.g. a provider's API key) go to the URL's own origin only, never to
        a host a redirect points at. One wall-clock deadline covers the whole fetch — DNS,
        connecting, every redirect, the headers and the body — however slowly a server
        trickles its bytes. Call it from a thread without a running event loop."""
        try:
            return asyncio.run(self._fetch_within_deadline(url, accept, headers or {}))
        except TimeoutError:
            raise ToolError(
                f"Fetching the page took longer than {self.deadline:g}s.",
                status=504,
                code="fetch_timeout",
                retryable=True,
            ) from None

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST `body` to `url` by the same rules (a webhook: its answer's status; no redirect
        is followed, the body read is discarded). Raises ToolError as `fetch` does."""
        try:
            return asyncio.run(self._post_within_deadline(url, body, headers))
        except TimeoutError:
            raise ToolError(f"No answer within {self.deadline:g}s.", status=504, code="fetch_timeout") from None

    async def _post_within_deadline(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        async with asyncio.timeout(self.deadline):
            host, port = self._check_url(url)
            address = await self._resolve(host, port)
            parsed = httpx.URL(url)
            target = parsed.copy_with(host=str(address))
            sent = {"Host": parsed.netloc.decode("ascii"), "User-Agent": USER_AGENT, **headers}
            async with httpx.AsyncClient(timeout=None, follow_redirects=False, trust_env=False) as client:
                request = client.build_request(
                    "POST", target, content=body, headers=sent, extensions={"sni_hostname": host}
                )
                try:
                    response = await client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise ToolError(
                        f"Could not connect ({type(exc).__name__}).", status=502, code="fetch_failed", retryable=True
                    ) from None
                await response.aclose()
                return response.status_code

    def check(self, url: str) -> None:
        """Refuse a URL that could never be fetched by these rules (scheme, credentials, port),
        without resolving it: what a form may check when the URL is saved."""
        self._check_url(url)

    async def _fetch_within_deadline(self, url: str, accept: tuple[str, ...], headers: dict[str, str]) -> FetchedPage:
        async with asyncio.timeout(self.deadline):
            return await self._fetch(url, accept, headers)

    async def _fetch(self, url: str, accept: tuple[str, ...], headers: dict[str, str]) -> FetchedPage:
        current = url
        try:
            origin = _origin(httpx.URL(url))
        except httpx.InvalidURL:
            origin = ""  # _check_url refuses it with a clear message
        async with httpx.AsyncClient(timeout=None, follow_redirects=False, trust_env=False) as client:
            for _ in range(self.max_redirects + 1):
                response = await self._request(client, current, (origin, headers))
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    await response.aclose()
                    if not location:
                        raise ToolError("The page redirected without a location.", status=502, code="bad_redirect")
                    current = urljoin(current, location)
                    continue
                return await self._read(response, url, current, accept)
        raise refused(f"Too many redirects (more than {self.max_redirects}).", code="too_many_redirects")

    # --- one hop ---------------------------------------------------------------------------

    async def _request(
        self, client: httpx.AsyncClient, url: str, credentials: tuple[str, dict[str, str]]
    ) -> httpx.Response:
        host, port = self._check_url(url)
        address = await self._resolve(host, port)
        parsed = httpx.URL(url)
        target = parsed.copy_with(host=str(address))
        headers = {
            "Host": parsed.netloc.decode("ascii"),
            "Accept-Encoding": "identity",
            "User-Agent": USER_AGENT,
            "Accept": ", ".join(ALLOWED_TYPES) + ";q=0.9, */*;q=0.1",
            **(credentials[1] if _origin(parsed) == credentials[0] else {}),
        }
        request = client.build_request("GET", target, headers=headers, extensions={"sni_hostname": host})
        try:
            return await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise ToolError(
                f"Could not connect to the site ({type(exc).__name__}).",
                status=502,
                code="fetch_failed",
                retryable=True,
            ) from None

    def _check_url(self, url: str) -> tuple[str, int]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise refused("That is not a valid URL.", code="invalid_url") from None
        if parts.scheme not in ("http", "https"):
            raise refused("Only http and https URLs can be fetched.")
        if parts.username is not None or parts.password is not None:
            raise refused("URLs with credentials in them are not fetched.")
        if not parts.hostname:
            raise refused("The URL has no host.", code="invalid_url")
        port = port or (443 if parts.scheme == "https" else 80)
        if port not in self.ports and not any(entry.endswith(f":{port}") for entry in self.allow):
            raise refused(f"Port {port} is not allowed; use 80 or 443.")
        return parts.hostname, port

    async def _resolve(self, host: str, port: int) -> Address:
        try:  # on a resolver thread of our own: the deadline bounds the wait, and asyncio.run
            # does not wait for a stuck lookup when it closes the loop (it would for its own pool)
            lookup = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
            infos = await asyncio.get_running_loop().run_in_executor(_resolvers, lookup)
        except (socket.gaierror, UnicodeError):
            raise ToolError(f"The host {host!r} could not be found.", status=502, code="dns_failed") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses:
            raise ToolError(f"The host {host!r} could not be found.", status=502, code="dns_failed")
        for address in addresses:
            allowed = f"{address}:{port}" in self.allow or f"[{address}]:{port}" in self.allow
            if not allowed and not is_public(address):
                raise refused("That address is not on the public internet.")
            if not allowed and port not in self.ports:
                raise refused(f"Port {port} is not allowed; use 80 or 443.")
        return addresses[0]

    # --- the body --------------------------------------------------------------------------

    async def _read(self, response: httpx.Response, url: str, final_url: str, accept: tuple[str, ...]) -> FetchedPage:
        try:
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if response.status_code >= 400:
                raise ToolError(
                    f"The site answered HTTP {response.status_code}.",
                    status=502,
                    code="upstream_status",
                    retryable=response.status_code >= 500,
                )
            if content_type not in accept:
                raise ToolError(
                    f"Content type {content_type or 'unknown'!r} is not supported.",
                    status=415,
                    code="unsupported_content_type",
                )
            body = bytearray()
            try:
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ToolError(
                            f"The page is larger than {self.max_bytes} bytes.", status=413, code="too_large"
                        )
            except httpx.HTTPError:
                raise ToolError(
                    "The site closed the connection.", status=502, code="fetch_failed", retryable=True
                ) from None
            return FetchedPage(
                url=url,
                final_url=final_url,
                status=response.status_code,
                content_type=content_type,
                charset=response.charset_encoding,
                body=bytes(body),
                fetched_at=datetime.now(UTC).isoformat(),
            )
        finally:
            await response.aclose()
