"""Checks shared by the config models of spec/: base URLs and environment variable names."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def http_base(field: str, value: str | None) -> str | None:
    """`value` as an http(s) base URL without a trailing slash, query or fragment."""
    if value is None:
        return None
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        raise ValueError(f"{field} must be an http(s) URL, not {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{field} must not have a query or fragment")
    return value
