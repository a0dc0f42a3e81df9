"""The SSRF suite: hostile URLs and redirect chains are all refused, and the internal
target never sees a request. Only the fixture server's exact ip:port is allowed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tools.base import ToolError
from tools.fetching import SafeFetcher, is_public

from .fixtures import LoopbackServer, html, redirect_route


@pytest.fixture(scope="module")
def internal() -> Iterator[LoopbackServer]:
    """Stands for an internal service (metadata endpoint, admin panel) on loopback."""
    server = LoopbackServer({"/": html("internal secrets"), "/latest/meta-data/": html("role credentials")})
    yield server
    server.close()


@pytest.fixture(scope="module")
def public() -> Iterator[LoopbackServer]:
    """Stands for a public site: the one target the tests allow."""
    server = LoopbackServer({"/page": html("<title>ok</title><p>fine</p>"), "/redirect": redirect_route})
    yield server
    server.close()


@pytest.fixture
def fetcher(settings: Any, public: LoopbackServer, internal: LoopbackServer) -> Iterator[SafeFetcher]:
    settings.TOOLS = {**settings.TOOLS, "FETCH_ALLOW": [f"127.0.0.1:{public.port}"], "FETCH_DEADLINE_SECONDS": 5}
    internal.hits.clear()
    yield SafeFetcher()
    assert internal.hits == [], "the internal target received a request"


def hostile(internal_port: int, public_url: str) -> list[str]:
    p = internal_port
    return [
        f"http://127.0.0.1:{p}/",
        f"http://localhost:{p}/",
        f"http://[::1]:{p}/",
        f"http://0.0.0.0:{p}/",
        f"http://0:{p}/",
        f"http://2130706433:{p}/",  # decimal 127.0.0.1
        f"http://0x7f000001:{p}/",  # hex
        f"http://0177.0.0.1:{p}/",  # octal
        f"http://127.1:{p}/",
        f"http://[::ffff:127.0.0.1]:{p}/",  # IPv4-mapped IPv6
        f"http://[::ffff:7f00:1]:{p}/",
        f"http://[64:ff9b::7f00:1]:{p}/",  # NAT64
        f"http://[2002:7f00:1::]:{p}/",  # 6to4
        f"http://[::]:{p}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",  # CGNAT
        "http://[fd00::1]/",
        "http://224.0.0.1/",
        "http://user:pass@example.com/",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{p}/_GET",
        "ftp://example.com/",
        "http://example.com:22/",
        f"{public_url}/redirect?to=http://127.0.0.1:{p}/",
        f"{public_url}/redirect?to=http://169.254.169.254/latest/meta-data/",
        f"{public_url}/redirect?to=http://[::ffff:127.0.0.1]:{p}/",
    ]


def test_every_hostile_url_is_refused(fetcher: SafeFetcher, internal: LoopbackServer, public: LoopbackServer) -> None:
    urls = hostile(internal.port, public.url)
    assert len(urls) >= 25
    for url in urls:
        with pytest.raises(ToolError) as caught:
            fetcher.fetch(url)
        assert caught.value.status == 400, f"{url}: {caught.value.message}"


def test_redirect_chains_are_capped(fetcher: SafeFetcher, public: LoopbackServer) -> None:
    url = f"{public.url}/page"
    for _ in range(6):
        url = f"{public.url}/redirect?to={url}"
    with pytest.raises(ToolError) as caught:
        fetcher.fetch(url)
    assert caught.value.code == "too_many_redirects"
    two_hops = f"{public.url}/redirect?to={public.url}/redirect?to={public.url}/page"
    assert fetcher.fetch(two_hops).final_url == f"{public.url}/page"


def test_the_allowed_server_is_reachable(fetcher: SafeFetcher, public: LoopbackServer) -> None:
    page = fetcher.fetch(f"{public.url}/page")
    assert page.status == 200 and b"fine" in page.body


@pytest.mark.parametrize(
    "address, public_",
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::a00:1", False),
        ("2002:c0a8:101::", False),
        ("100.64.0.1", False),
        ("::", False),
    ],
)
def test_address_classification(address: str, public_: bool) -> None:
    import ipaddress

    assert is_public(ipaddress.ip_address(address)) is public_
