"""Serving stored images behind signed, expiring URLs.

The route only checks the URL and relays what the storage answers: the file's bytes, or
a redirect to where the storage serves it itself (an object store's presigned URL), so it
works the same whatever the storage is.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from pixgate.api.deps import core
from pixgate.errors import PixgateError
from pixgate.storage.base import FORMATS, Download, Storage

router = APIRouter(tags=["files"])

CACHE_CONTROL = {"Cache-Control": "private, max-age=3600"}
_IMAGE_RESPONSES = {
    200: {
        "description": "The image file (or a redirect to it)",
        "content": {media: {} for _, media in FORMATS.values()},
    },
    307: {"description": "Redirect to the storage's own short-lived URL for the file"},
    403: {"description": "The URL's signature is wrong, or it has expired"},
}


@router.get(
    "/files/{path:path}",
    summary="Download a generated image (signed URL)",
    response_class=Response,
    responses=_IMAGE_RESPONSES,
)
async def get_file(
    path: str, request: Request, expires: str | None = None, sig: str | None = None
) -> Response:
    storage = core(request).storage
    download = await asyncio.to_thread(_download, storage, path, expires, sig)
    if download is None:
        raise PixgateError("url_invalid", args_={"ttl": storage.ttl_seconds})
    if download.redirect is not None:
        return RedirectResponse(download.redirect, status_code=307)
    return Response(download.data, media_type=download.media_type, headers=CACHE_CONTROL)


def _download(storage: Storage, path: str, expires: str | None, sig: str | None) -> Download | None:
    """What to answer, or None for a bad, expired or no longer existing file's URL (off
    the event loop: a local storage touches the disk, an object store the network)."""
    found = storage.verify(path, expires, sig)
    if found is None:
        return None
    try:
        return storage.download(found)
    except FileNotFoundError:  # swept between the check and the read
        return None
