"""Reading request bodies as a hostile client would send them.

A body is read from `request.stream()` and refused with a 413 as soon as it passes its
limit (a Content-Length over the limit is refused before anything is read, a chunked body
when its running total passes it), so no dialect ever holds more than its limit in memory.
JSON is parsed so that nothing a client can write turns into a 500: nesting deeper than
`MAX_DEPTH`, lone surrogates (which cannot be encoded back to UTF-8 when stored or
rendered), integers too long to convert, and NaN/Infinity are 400s naming the field.

Routes take these as FastAPI dependencies declared *after* authentication, so an unknown
key is refused before a byte of the body is read.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.types import Message, Receive

from pixgate.errors import PixgateError, invalid

MAX_JSON_BYTES = 1 << 20  # prompts are at most a few KB; anything near this is abuse
MAX_DEPTH = 64  # the deepest real body (Volcengine's req_json.logo_info) is 3 levels
# No field takes more than 11 digits (seeds go to 9999999999); Python refuses to convert
# more than 4300 and the work grows with the square of the length, so stop far earlier.
MAX_NUMBER_DIGITS = 100
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refused:
    """A JSON value `json.loads` was told not to build (a too-long integer, NaN): kept in
    place so the walk after parsing can name the field it sits in."""

    def __init__(self, en: str, zh: str):
        self.en, self.zh = en, zh


def _parse_int(text: str) -> int | _Refused:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        return _Refused(
            f"must be a number of at most {MAX_NUMBER_DIGITS} digits (got {len(text)})",
            f"数字不能超过 {MAX_NUMBER_DIGITS} 位(收到 {len(text)} 位)",
        )
    return int(text)


def _parse_constant(name: str) -> _Refused:
    return _Refused(f"must be a finite number (got {name})", f"必须是有限数字(收到 {name})")


def too_large(limit: int, size: int | None = None) -> PixgateError:
    """The 413; `size` None when the body has no Content-Length (only its lower bound
    is known: it passed the limit)."""
    shown = str(size) if size is not None else f">{limit}"
    return PixgateError("body_too_large", args_={"size": shown, "limit": limit})


def declared_length(request: Request, limit: int) -> None:
    """Refuse, unread, a body whose Content-Length is over `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit, int(declared))


async def read_capped(request: Request, limit: int = MAX_JSON_BYTES) -> bytes:
    """The body, read while it streams; 413 before more than `limit` bytes are held."""
    declared_length(request, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def check_json(value: Any, name: str = "") -> None:
    """Walk a parsed JSON value breadth-first (top-level fields first), refusing what
    would break later: too deep, lone surrogates in strings or keys, refused numbers.
    Errors name the field's path under `name` ('body' for the document itself)."""
    queue: deque[tuple[Any, str, int]] = deque([(value, name, 0)])
    while queue:
        item, path, depth = queue.popleft()
        if isinstance(item, dict | list) and depth >= MAX_DEPTH:
            top = path.split(".")[0] if path else "body"
            raise invalid(
                top,
                f"is nested too deeply (at most {MAX_DEPTH} levels)",
                f"嵌套层数过多(最多 {MAX_DEPTH} 层)",
            )
        if isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    raise _not_unicode(path or "body", key=True)
                queue.append((child, _join(path, key), depth + 1))
        elif isinstance(item, list):
            queue.extend((child, _join(path, i), depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                raise _not_unicode(path or "body")
        elif isinstance(item, _Refused):
            raise invalid(path or "body", item.en, item.zh)


def _not_unicode(field: str, key: bool = False) -> PixgateError:
    if key:
        en, zh = "has a field name that is not valid Unicode", "包含不是有效 Unicode 文本的字段名"
    else:
        en, zh = "must be valid Unicode text", "必须是有效的 Unicode 文本"
    return invalid(
        field,
        f"{en} (it contains a lone surrogate such as \\ud800)",
        f"{zh}(包含单独的代理项,如 \\ud800)",
    )


def load_json(
    raw: bytes | str,
    name: str = "",
    invalid_words: tuple[str, str] = ("is not valid JSON: {}", "不是有效的 JSON:{}"),
) -> Any:
    """`json.loads` that answers every bad document with a PixgateError: invalid JSON as
    `invalid_json`, or for JSON inside a field (`name`) as a 400 naming it in
    `invalid_words` (templates for the parser's detail); then the hazards `check_json`
    looks for."""
    try:
        value = json.loads(raw, parse_int=_parse_int, parse_constant=_parse_constant)
    except RecursionError as exc:
        raise invalid(
            name or "body",
            f"is nested too deeply (at most {MAX_DEPTH} levels)",
            f"嵌套层数过多(最多 {MAX_DEPTH} 层)",
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        detail = str(exc)[:200]
        if name:
            en, zh = invalid_words
            raise invalid(name, en.format(detail), zh.format(detail)) from exc
        raise PixgateError("invalid_json", args_={"detail": detail, "detail_zh": detail}) from exc
    check_json(value, name)
    return value


def parse_json_object(raw: bytes, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """A JSON object body (400 for anything else, 413 over `limit`)."""
    if len(raw) > limit:
        raise too_large(limit, len(raw))
    body = load_json(raw or b"null")
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object", "必须是 JSON 对象")
    return body


def json_body(limit: int = MAX_JSON_BYTES) -> Callable[[Request], Awaitable[dict[str, Any]]]:
    """A dependency: the request's JSON object, capped at `limit` bytes while it streams.
    Its errors render in the shape of the dialect that owns the path."""

    async def body(request: Request) -> dict[str, Any]:
        return parse_json_object(await read_capped(request, limit), limit)

    return body


def _capped_receive(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large(limit)
        return message

    return capped


def unreadable_body(detail: str) -> PixgateError:
    """A malformed multipart body, in the words Starlette used for it."""
    return PixgateError(
        "invalid_value", param="body", args_={"detail": detail, "detail_zh": detail}
    )


def _check_form(form: FormData) -> None:
    """Lone surrogates in a form: Starlette decodes parts in the charset the client names,
    and `charset=utf-7` turns `+2AA-` into `\\ud800`."""
    for name, value in form.multi_items():
        if _SURROGATE.search(name):
            raise _not_unicode("body", key=True)
        text = value if isinstance(value, str) else (value.filename or "")
        if _SURROGATE.search(text):
            raise _not_unicode(name)


def form_body(
    limit: int,
    *,
    max_files: int,
    max_fields: int,
    max_part_size: int,
    unreadable: Callable[[str], PixgateError] = unreadable_body,
) -> Callable[[Request], AsyncIterator[FormData]]:
    """A dependency: the multipart form, its files spooled to disk by Starlette as they
    arrive, with `limit` applied to the whole body while it is read (and to a declared
    Content-Length before). A malformed body is `unreadable(detail)`, a 400."""

    async def form(request: Request) -> AsyncIterator[FormData]:
        declared_length(request, limit)
        capped = Request(request.scope, _capped_receive(request.receive, limit))
        try:
            data = await capped.form(
                max_files=max_files, max_fields=max_fields, max_part_size=max_part_size
            )
        except (MultiPartException, StarletteHTTPException) as exc:
            detail = getattr(exc, "message", None) or getattr(exc, "detail", "")
            raise unreadable(str(detail)) from exc
        try:
            _check_form(data)
            yield data
        finally:
            await data.close()

    return form
