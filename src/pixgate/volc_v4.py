"""Volcengine's HMAC-SHA256 request signature ("V4", AWS SigV4's shape), computed as the
official SDK computes it (`volcengine/auth/SignerV4.py`): the canonical query, URI and
request, the signing key, the signature, and `sign`, which returns a request's headers
signed with an access key and secret key.

Pure (no I/O, no other pixgate module), so one implementation serves both sides: the API
verifies callers' signatures with it (pixgate.api.dialects.volc_signing, which adds header
parsing, date checks and pixgate's errors) and the relay backend signs its calls to
Volcengine with it (pixgate.backends.relay.apis.volcengine).

    Authorization: HMAC-SHA256 Credential=AK/20250101/cn-north-1/cv/request,
                   SignedHeaders=content-type;host;x-content-sha256;x-date, Signature=<hex>
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, unquote, urlsplit

ALGORITHM = "HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# Besides every X-* header, the SDK signs these when a request has them.
_SIGNED_PLAIN = frozenset({"content-type", "content-md5", "host"})


def _quote(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_query(raw_query: str) -> str:
    """Keys sorted, each value percent-encoded (RFC 3986 unreserved kept), repeated keys in
    the order sent: the SDK's `Util.norm_query`."""
    grouped: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        grouped.setdefault(key, []).append(value)
    pairs = [f"{_quote(k)}={_quote(v)}" for k in sorted(grouped) for v in grouped[k]]
    return "&".join(pairs).replace("+", "%20")


def canonical_uri(path: str) -> str:
    """The (decoded) path, percent-encoded with slashes kept: the SDK's `Util.norm_uri`."""
    return quote(path or "/").replace("%2F", "/").replace("+", "%20")


def header_value(name: str, value: str) -> str:
    """A signed header's value as it is signed: trimmed, and `host` without a default
    port (the SDK signs `example.com` for `example.com:443`)."""
    value = value.strip()
    if name == "host":
        host, sep, port = value.rpartition(":")
        if sep and port in ("80", "443"):
            value = host
    return value


def canonical_request(
    method: str,
    path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    body_sha256: str,
) -> str:
    """The text whose hash is signed. `headers[name]` must give every signed header
    (lower-case names; a case-insensitive mapping will do)."""
    header_block = "".join(f"{n}:{header_value(n, headers[n])}\n" for n in signed_headers)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(raw_query),
            header_block,
            ";".join(signed_headers),
            body_sha256,
        ]
    )


def scope(date: str, region: str, service: str) -> str:
    """The credential scope: `YYYYMMDD/region/service/request`."""
    return f"{date}/{region}/{service}/request"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The key derived from the secret for one day, region and service."""
    key = secret.encode()
    for part in (date, region, service, "request"):
        key = _hmac(key, part)
    return key


def signature(
    secret: str, date: str, region: str, service: str, x_date: str, canonical: str
) -> str:
    """The hex signature of a canonical request signed at `x_date` under `secret`."""
    hashed = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = "\n".join([ALGORITHM, x_date, scope(date, region, service), hashed])
    return _hmac(signing_key(secret, date, region, service), to_sign).hex()


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers to send `body` to `url` with: `headers`, plus Host (from the URL, unless
    given), X-Date, X-Content-Sha256 and Authorization. As the SDK does, Content-Type,
    Content-Md5, Host and every X-* header are signed; send the headers unchanged."""
    split = urlsplit(url)
    x_date = (now or datetime.now(UTC)).strftime(DATE_FORMAT)
    body_sha256 = hashlib.sha256(body).hexdigest()
    added = {"X-Date": x_date, "X-Content-Sha256": body_sha256}
    replaced = {"x-date", "x-content-sha256", "authorization"}
    out = {k: v for k, v in headers.items() if k.lower() not in replaced}
    if not any(k.lower() == "host" for k in out):
        out["Host"] = split.netloc
    out.update(added)
    lower = {k.lower(): v for k, v in out.items()}
    signed = tuple(sorted(n for n in lower if n in _SIGNED_PLAIN or n.startswith("x-")))
    canonical = canonical_request(
        method, unquote(split.path), split.query, lower, signed, body_sha256
    )
    date = x_date[:8]
    hex_signature = signature(secret_key, date, region, service, x_date, canonical)
    out["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope(date, region, service)}, "
        f"SignedHeaders={';'.join(signed)}, Signature={hex_signature}"
    )
    return out
