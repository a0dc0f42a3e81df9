"""Client addresses through trusted proxies only, and IPv6 clients grouped by /64."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from chat.network import ProxyHeadersMiddleware, client_address, client_bucket, client_key


@pytest.fixture
def proxies(settings: Any) -> None:
    settings.GHOSTGPT = {**settings.GHOSTGPT, "TRUSTED_PROXIES": ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]}


def bucket(**meta: str) -> str:
    return client_bucket(client_address(meta))


def test_without_trusted_proxies_forwarded_for_is_ignored() -> None:
    # Today's hole: a client picks its own bucket by sending any X-Forwarded-For.
    assert bucket(REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.1") == "203.0.113.7"
    assert bucket(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1") == "127.0.0.1"


@pytest.mark.usefixtures("proxies")
def test_behind_a_trusted_proxy_each_client_has_its_own_bucket() -> None:
    assert bucket(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1") == "198.51.100.1"
    assert bucket(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.2") == "198.51.100.2"
    # A client that prepends a fake hop gets the address the proxy saw, not the fake one.
    assert bucket(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.9, 10.1.1.1") == "198.51.100.9"
    # An untrusted peer's header counts for nothing.
    assert bucket(REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.1") == "203.0.113.7"
    assert bucket(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="garbage") == "127.0.0.1"


@pytest.mark.usefixtures("proxies")
def test_ipv6_clients_are_grouped_by_their_64() -> None:
    one = bucket(REMOTE_ADDR="2001:db8:1:2::1")
    assert one == bucket(REMOTE_ADDR="2001:db8:1:2:ffff:ffff:ffff:fffe") == "2001:db8:1:2::/64"
    assert one != bucket(REMOTE_ADDR="2001:db8:1:3::1")
    assert bucket(REMOTE_ADDR="fd00::1", HTTP_X_FORWARDED_FOR="[2001:db8:9:9::5]:443") == "2001:db8:9:9::/64"
    assert bucket(REMOTE_ADDR="::ffff:198.51.100.3") == "198.51.100.3"


def test_the_middleware_drops_forwarding_headers_from_untrusted_peers(settings: Any) -> None:
    settings.GHOSTGPT = {**settings.GHOSTGPT, "TRUSTED_PROXIES": ["10.0.0.0/8"]}
    seen: list[Any] = []
    middleware = ProxyHeadersMiddleware(lambda request: seen.append(request) or HttpResponse())
    factory = RequestFactory()
    spoofed = factory.get(
        "/", REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_FOR="1.1.1.1"
    )
    middleware(spoofed)
    assert not seen[-1].is_secure() and client_key(seen[-1]) == "203.0.113.7"
    proxied = factory.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_PROTO="https", HTTP_X_FORWARDED_FOR="1.1.1.1")
    middleware(proxied)
    assert seen[-1].is_secure() and client_key(seen[-1]) == "1.1.1.1"
