"""Fetching the URLs clients name without opening a door into the operator's network.

A client that can make the server GET any URL can reach what only the server can reach:
the loopback interface, the private network, cloud metadata (169.254.169.254). So every
connection pixgate makes to a client-chosen URL (input images, task webhooks) goes
through `GuardedTransport`, which:

- resolves the host once and refuses it unless every address it resolves to is public
  (or inside an operator allow-list), so loopback, private, link-local, multicast,
  unspecified and reserved addresses are out, in every spelling: decimal (`2130706433`),
  octal (`0177.0.0.1`), hex (`0x7f.1`), short (`127.1`), IPv6-mapped (`::ffff:127.0.0.1`),
  6to4 and NAT64 wrappings;
- connects to the address it checked, never resolving again (no DNS-rebinding window),
  with the Host header and TLS SNI still the URL's host name.

`fetch_image` adds what an image download needs: redirects followed here (each hop checked
again, a bounded number), one total deadline (a server that drips bytes cannot hold a
request), a byte cap applied while streaming, and a look at the first bytes so a body that
is not an image is dropped at once. Every failure is a `FetchRefused` whose text is for
the server's log only: clients are told one thing whatever happened, so a URL cannot be
used to learn which internal ports are open.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_INET_ATON = re.compile(r"[0-9a-fA-FxX.]+")  # what C's inet_aton might read as a number
_REDIRECTS = {301, 302, 303, 307, 308}
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # PNG, JPEG; WebP is checked apart


class FetchRefused(Exception):
    """Why a fetch produced no body. The text is for the server's log, never the client."""


class AddressRefused(httpx.ConnectError):
    """The URL's host is (or resolves to) an address that is not allowed. An httpx
    transport error, so callers that handle connection failures handle this too."""


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Allow-list entries ("10.0.0.0/8", "fd00::/8", "192.168.1.5") -> networks."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), else `ip` itself:
    those reach the IPv4 host, so they are judged as it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def is_public(ip: IPAddress) -> bool:
    """A globally routable unicast address: not loopback, private, link-local,
    site-local, multicast, unspecified or reserved (belt and braces: Python's `is_global`
    alone lets multicast and some reserved IPv6 ranges through)."""
    ip = _unwrap(ip)
    special = (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )
    return ip.is_global and not special


def address_allowed(ip: IPAddress, allow: tuple[IPNetwork, ...] = ()) -> bool:
    """Public, or inside one of the operator's allowed networks."""
    plain = _unwrap(ip)
    return any(plain in net or ip in net for net in allow) or is_public(ip)


def literal_address(host: str) -> IPAddress | None:
    """The address a host string spells without DNS, in any form the C resolver accepts
    (`127.0.0.1`, `::1`, `2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`); else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _INET_ATON.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def local_name(host: str) -> bool:
    """Names every resolver must answer with loopback (RFC 6761), known without DNS."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


async def resolve_allowed(host: str, port: int, allow: tuple[IPNetwork, ...] = ()) -> str:
    """The address to connect to for `host`: the first one it resolves to that is allowed
    (only a checked address is ever connected to, so a name that also resolves to private
    addresses gains nothing from them); AddressRefused when none is."""
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if address_allowed(address, allow):
            return str(_unwrap(address))
    raise AddressRefused(f"{host} is not a public address")


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying context for every guarded connection (loading CAs costs ~10 ms)."""
    return httpx.create_ssl_context()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that connects only to allowed addresses, to the very address it
    checked. Connections are not kept alive: the pool would key them by address, so a TLS
    connection made for one host name could carry another name's request."""

    def __init__(self, allow: tuple[IPNetwork, ...] = ()) -> None:
        self.allow = allow
        self._transport = httpx.AsyncHTTPTransport(
            verify=_ssl_context(), limits=httpx.Limits(max_keepalive_connections=0)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.raw_host.decode("ascii")  # IDNA-encoded: what DNS and SNI want
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await resolve_allowed(host, port, self.allow)
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=address),
            headers=request.headers,  # Host: still the name (httpx set it from the URL)
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": host},
        )
        return await self._transport.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self._transport.aclose()


@dataclass(frozen=True)
class FetchPolicy:
    """What one image download may do: where it may connect, for how long, how much."""

    allow: tuple[IPNetwork, ...] = ()
    deadline_seconds: float = 15.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 3


def looks_like_image(head: bytes) -> bool:
    """Whether a body starts like a PNG, JPEG or WebP file."""
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


async def fetch_image(url: str, policy: FetchPolicy) -> bytes:
    """The body of an http(s) image URL, or FetchRefused (with the reason, for the log)."""
    try:
        async with asyncio.timeout(policy.deadline_seconds):
            return await _follow(url, policy)
    except TimeoutError as exc:
        raise FetchRefused(f"no complete answer within {policy.deadline_seconds} s") from exc
    except (httpx.HTTPError, httpx.InvalidURL, OSError, UnicodeError, ValueError) as exc:
        raise FetchRefused(f"{type(exc).__name__}: {exc}") from exc


async def _follow(url: str, policy: FetchPolicy) -> bytes:
    """GET `url`, following redirects here so every hop goes through the guard."""
    async with httpx.AsyncClient(
        transport=GuardedTransport(policy.allow),
        timeout=policy.deadline_seconds,
        trust_env=False,  # a proxy from the environment would connect for us, unchecked
        headers={"Accept": "image/png, image/jpeg, image/webp"},
    ) as client:
        for _hop in range(policy.max_redirects + 1):
            if httpx.URL(url).scheme not in ("http", "https"):
                raise FetchRefused(f"not an http(s) URL: {url[:200]}")
            async with client.stream("GET", url) as response:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    url = str(response.url.join(location))
                    continue
                if response.status_code != 200:
                    raise FetchRefused(f"HTTP {response.status_code} from {url[:200]}")
                return await _read_image(response, policy.max_bytes)
    raise FetchRefused(f"more than {policy.max_redirects} redirects")


async def _read_image(response: httpx.Response, max_bytes: int) -> bytes:
    """The body, refused as soon as it passes `max_bytes` or starts like no image."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchRefused(f"Content-Length {declared} is over {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    checked = False
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FetchRefused(f"body passed {max_bytes} bytes")
        chunks.append(chunk)
        if not checked and size >= 12:
            head = b"".join(chunks)[:12]
            if not looks_like_image(head):
                raise FetchRefused(f"not a PNG, JPEG or WebP body (starts {head[:8]!r})")
            checked = True
    if not checked:
        raise FetchRefused(f"a {size}-byte body is no image")
    return b"".join(chunks)
