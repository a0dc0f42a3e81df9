"""Who is on the other end of a connection: the client's address, seen through the
operator's trusted reverse proxies only.

`X-Forwarded-For` and `X-Forwarded-Proto` are honoured only when the peer that sent them
is in GHOSTGPT_TRUSTED_PROXIES (CIDRs); from anyone else they are dropped, so a client
cannot choose its own rate-limit bucket or claim HTTPS. Behind trusted proxies the client
is the right-most address in `X-Forwarded-For` that is not itself a trusted proxy.

Per-address limits count an IPv6 client by its /64 (one subscriber's network: a host
that rotates through its 2^64 addresses is still one client) and an IPv4 client by its
address.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
IPV6_CLIENT_PREFIX = 64
MAX_KEPT_ADDRESS = 64  # longer address strings (forwarding headers are the client's) are not kept


@functools.cache
def _trusted(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def trusted_proxies() -> tuple[Network, ...]:
    return _trusted(tuple(settings.GHOSTGPT["TRUSTED_PROXIES"]))


def _parse(value: str) -> Address | None:
    """An address as a peer or a forwarding header writes it (with a port, bracketed, zoned);
    None when it is not one. The same peers and proxies come over and over: short values
    are kept (addresses are immutable), long ones parsed each time."""
    return _parse_kept(value) if len(value) <= MAX_KEPT_ADDRESS else _parse_address(value)


def _parse_address(value: str) -> Address | None:
    value = value.strip().strip('"')
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value.split("%")[0])
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


_parse_kept = functools.lru_cache(maxsize=4096)(_parse_address)


def is_trusted(address: Address | None) -> bool:
    return address is not None and any(address in network for network in trusted_proxies())


def client_address(meta: dict[str, object]) -> Address | None:
    """The client's address: the peer, or — when the peer is a trusted proxy — the
    right-most untrusted hop of X-Forwarded-For."""
    peer = _parse(str(meta.get("REMOTE_ADDR") or ""))
    if not is_trusted(peer):
        return peer
    hops = [_parse(hop) for hop in str(meta.get("HTTP_X_FORWARDED_FOR") or "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop is None:
            return peer  # a garbled chain: trust no further than the proxy itself
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer


def client_bucket(address: Address | None) -> str:
    """The rate-limit subject of an address: an IPv6 client by its /64."""
    if address is None:
        return "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


def client_key(request: HttpRequest) -> str:
    """The per-address rate-limit subject of a request."""
    return getattr(request, "client_bucket", None) or client_bucket(client_address(request.META))


@sync_and_async_middleware
def ProxyHeadersMiddleware(  # noqa: N802
    get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]],
):
    """Resolves the client's address once per request and drops forwarding headers that
    did not come from a trusted proxy (Django's `is_secure()` reads X-Forwarded-Proto)."""

    def prepare(request: HttpRequest) -> None:
        peer = _parse(str(request.META.get("REMOTE_ADDR") or ""))
        if not is_trusted(peer):
            for header in ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST"):
                request.META.pop(header, None)
        request.client_bucket = client_bucket(client_address(request.META))  # type: ignore[attr-defined]

    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            prepare(request)
            return await get_response(request)  # type: ignore[misc, no-any-return]

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        prepare(request)
        return get_response(request)  # type: ignore[return-value]

    return middleware
