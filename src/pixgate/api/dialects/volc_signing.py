"""Volcengine's HMAC-SHA256 request signing ("V4", AWS SigV4's shape), verified exactly as
the official SDK builds it (`volcengine/auth/SignerV4.py`), so the SDK and every client that
follows Volcengine's signing guide are accepted unchanged.

The algorithm itself (canonical request, key derivation, signature) is `pixgate.volc_v4`,
shared with the relay backend, which signs its calls to Volcengine with it; this module
parses the Authorization header, checks X-Date and raises pixgate's errors.

The access key is a pixgate key's id and the secret key is that key's signing secret. This
module only checks a signature against a secret it is given; looking the key up, counting
failures and remembering signatures against replay are the caller's.

    Authorization: HMAC-SHA256 Credential=AK/20250101/cn-north-1/cv/request,
                   SignedHeaders=content-type;host;x-content-sha256;x-date, Signature=<hex>
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pixgate import volc_v4
from pixgate.errors import PixgateError
from pixgate.volc_v4 import ALGORITHM, DATE_FORMAT
from pixgate.volc_v4 import canonical_query as canonical_query  # re-exported

MAX_SKEW_SECONDS = 15 * 60  # a request dated further from our clock, either way, is refused


@dataclass(frozen=True)
class Credential:
    """What the Authorization header claims: who signed, for which scope, and how."""

    access_key: str
    date: str  # YYYYMMDD, must be X-Date's day
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return volc_v4.scope(self.date, self.region, self.service)


def _malformed(detail: str, detail_zh: str) -> PixgateError:
    return PixgateError("invalid_authorization", args_={"detail": detail, "detail_zh": detail_zh})


def is_signed(authorization: str | None) -> bool:
    return (authorization or "").startswith(ALGORITHM + " ")


def parse_authorization(header: str) -> Credential:
    """Split `HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`."""
    _, _, rest = header.partition(" ")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts[name.strip()] = value.strip()
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if not parts.get(n)]
    if missing:
        raise _malformed(f"missing {', '.join(missing)}", f"缺少 {', '.join(missing)}")
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "request" or not all(scope):
        raise _malformed(
            "Credential must be AccessKey/YYYYMMDD/region/service/request",
            "Credential 必须是 AccessKey/YYYYMMDD/region/service/request",
        )
    signature = parts["Signature"].lower()
    if len(signature) != 64 or any(c not in "0123456789abcdef" for c in signature):
        raise _malformed("Signature must be 64 hex digits", "Signature 必须是 64 位十六进制")
    signed = tuple(h.strip().lower() for h in parts["SignedHeaders"].split(";") if h.strip())
    return Credential(scope[0], scope[1], scope[2], scope[3], signed, signature)


def check_date(x_date: str | None, credential: Credential, now: datetime) -> datetime:
    """X-Date as a time, refused when absent, malformed, not the scope's day, or more than
    MAX_SKEW_SECONDS from `now` either way."""
    if not x_date:
        raise _malformed("the X-Date header is missing", "缺少 X-Date 请求头")
    try:
        signed_at = datetime.strptime(x_date, DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise _malformed(
            f"X-Date must look like 20250101T120000Z (got {x_date!r})",
            f"X-Date 必须形如 20250101T120000Z(收到 {x_date!r})",
        ) from exc
    if credential.date != x_date[:8]:
        raise _malformed(
            f"the Credential date {credential.date} is not X-Date's day {x_date[:8]}",
            f"Credential 日期 {credential.date} 与 X-Date 日期 {x_date[:8]} 不一致",
        )
    if abs((now - signed_at).total_seconds()) > MAX_SKEW_SECONDS:
        raise PixgateError(
            "signature_expired",
            args_={
                "date": x_date,
                "now": now.strftime(DATE_FORMAT),
                "minutes": MAX_SKEW_SECONDS // 60,
            },
        )
    return signed_at


def _signed_values(headers: Mapping[str, str], signed_headers: tuple[str, ...]) -> dict[str, str]:
    """The signed headers' values, refused when one is not in the request."""
    values: dict[str, str] = {}
    for name in signed_headers:
        value = headers.get(name)
        if value is None:
            raise _malformed(
                f"signed header {name!r} is not in the request", f"签名头 {name!r} 不存在"
            )
        values[name] = value
    return values


def verify(
    credential: Credential,
    secret: str,
    *,
    method: str,
    path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
) -> None:
    """Raise `signature_mismatch` unless the request was signed with `secret`. The body is
    hashed here, so a body changed after signing never matches, whatever X-Content-Sha256
    says; a declared X-Content-Sha256 that is not the body's is reported as such."""
    body_sha256 = hashlib.sha256(body).hexdigest()
    declared = headers.get("x-content-sha256")
    if declared is not None and not hmac.compare_digest(declared.strip().lower(), body_sha256):
        raise PixgateError(
            "signature_mismatch",
            param="X-Content-Sha256",
            args_={
                "detail": "X-Content-Sha256 is not the SHA-256 of the body that arrived",
                "detail_zh": "X-Content-Sha256 与收到的请求体的 SHA-256 不一致",
            },
        )
    signed = credential.signed_headers
    canonical = volc_v4.canonical_request(
        method, path, raw_query, _signed_values(headers, signed), signed, body_sha256
    )
    expected = volc_v4.signature(
        secret,
        credential.date,
        credential.region,
        credential.service,
        headers.get("x-date", ""),
        canonical,
    )
    if not hmac.compare_digest(expected, credential.signature):
        raise PixgateError(
            "signature_mismatch",
            args_={
                "detail": "check the secret key and sign the method, path, query, signed "
                "headers and body exactly as sent",
                "detail_zh": "请检查 SecretKey,并按实际发送的方法、路径、查询串、签名头和"
                "请求体签名",
            },
        )
