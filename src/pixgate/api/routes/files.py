"""Serving stored images behind signed, expiring URLs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from pixgate.api.deps import core
from pixgate.errors import PixgateError
from pixgate.storage.local import FORMATS

router = APIRouter(tags=["files"])

_MEDIA = {".png": FORMATS["png"][1], ".jpg": FORMATS["jpeg"][1], ".webp": FORMATS["webp"][1]}


@router.get("/files/{path:path}", summary="Download a generated image (signed URL)")
async def get_file(
    path: str, request: Request, expires: str | None = None, sig: str | None = None
) -> FileResponse:
    storage = core(request).storage
    found = storage.verify(path, expires, sig)
    if found is None:
        raise PixgateError("url_invalid", args_={"ttl": storage.ttl})
    return FileResponse(
        found,
        media_type=_MEDIA.get(found.suffix, "application/octet-stream"),
        headers={"Cache-Control": "private, max-age=3600"},
    )
