"""Input images for img2img, inpainting and variations: decoded safely, checked, and kept
in storage so a worker on another machine reads exactly what the client sent.

Defences: a byte limit before decoding, Pillow's decompression-bomb check turned into a
400, a pixel limit, a short list of formats, and EXIF orientation applied so phone photos
are the right way up.
"""

from __future__ import annotations

import base64
import binascii
import io
import uuid
import warnings

from PIL import Image, ImageFilter, ImageOps

from pixgate.errors import invalid
from pixgate.storage.local import LocalStorage

MAX_INPUT_BYTES = 20 * 1024 * 1024
MAX_INPUT_PIXELS = 4096 * 4096
FORMATS = {"PNG", "JPEG", "WEBP"}


def decode_image(data: bytes, field: str) -> Image.Image:
    """Bytes from a client -> an upright PIL image, or a 400 naming `field`."""
    if not data:
        raise invalid(field, "must be a non-empty image file", "必须是非空的图片文件")
    if len(data) > MAX_INPUT_BYTES:
        raise invalid(
            field,
            f"must be at most {MAX_INPUT_BYTES} bytes (got {len(data)})",
            f"不能超过 {MAX_INPUT_BYTES} 字节(收到 {len(data)})",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise invalid(
                    field,
                    f"must be PNG, JPEG or WebP (got {image.format})",
                    f"必须是 PNG、JPEG 或 WebP(收到 {image.format})",
                )
            if image.width * image.height > MAX_INPUT_PIXELS:
                raise invalid(
                    field,
                    f"must have at most {MAX_INPUT_PIXELS} pixels "
                    f"(got {image.width}x{image.height})",
                    f"像素数不能超过 {MAX_INPUT_PIXELS}(收到 {image.width}x{image.height})",
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise invalid(field, "is too large to decode safely", "图片过大,无法安全解码") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's "cannot identify image"
        raise invalid(field, "is not a readable image", "不是可读取的图片") from exc
    return ImageOps.exif_transpose(image)


def decode_data_uri(value: str, field: str) -> bytes:
    """'data:image/png;base64,....' (or bare base64) -> bytes."""
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(
            field, "must be a data URI or base64 image", "必须是 data URI 或 base64 图片"
        ) from exc


def mask_from_alpha(image: Image.Image) -> Image.Image | None:
    """OpenAI's convention: fully transparent pixels are the area to repaint. Returns a
    diffusers mask (white = repaint), or None if the image has no transparency."""
    if "A" not in image.getbands():
        return None
    alpha = image.getchannel("A")
    if alpha.getextrema()[0] > 0:
        return None
    return alpha.point(lambda a: 255 if a == 0 else 0).convert("L")


def save_input(storage: LocalStorage, image: Image.Image, role: str) -> str:
    """Keep an input image (as PNG) for the worker; returns its storage path."""
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=1)
    return storage.save(f"in-{uuid.uuid4().hex}-{role}.png", buf.getvalue()).path


def open_input(storage: LocalStorage, path: str) -> Image.Image:
    image = Image.open(io.BytesIO(storage.read(path)))
    image.load()
    return image


def composite_outside_mask(
    generated: Image.Image, original: Image.Image, mask: Image.Image, feather: int = 4
) -> Image.Image:
    """Keep the original pixels outside the mask, blending over a feathered edge."""
    size = generated.size
    soft = mask.convert("L").resize(size).filter(ImageFilter.GaussianBlur(feather))
    return Image.composite(generated.convert("RGB"), original.convert("RGB").resize(size), soft)


async def fetch_image_bytes(url: str, field: str, timeout: float = 15.0) -> bytes:
    """Download an input image from an http(s) URL, refusing anything over the size limit
    before it is all read."""
    import httpx

    if not url.startswith(("http://", "https://")):
        raise invalid(
            field,
            "must be a data URI, base64 or an http(s) URL",
            "必须是 data URI、base64 或 http(s) 链接",
        )
    try:
        async with (
            httpx.AsyncClient(timeout=timeout, follow_redirects=True, max_redirects=3) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise invalid(
                    field,
                    f"could not be downloaded (HTTP {response.status_code})",
                    f"无法下载(HTTP {response.status_code})",
                )
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_INPUT_BYTES:
                    raise invalid(
                        field,
                        f"must be at most {MAX_INPUT_BYTES} bytes",
                        f"不能超过 {MAX_INPUT_BYTES} 字节",
                    )
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise invalid(
            field,
            f"could not be downloaded ({type(exc).__name__})",
            f"无法下载({type(exc).__name__})",
        ) from exc


async def image_from_field(value: str, field: str, allow_urls: bool) -> Image.Image:
    """A JSON `image` field (data URI, bare base64 or URL) -> a decoded input image."""
    if value.startswith(("http://", "https://")):
        if not allow_urls:
            raise invalid(
                field,
                "URLs are disabled on this server; send a data URI",
                "此服务器不接受链接,请发送 data URI",
            )
        data = await fetch_image_bytes(value, field)
    else:
        data = decode_data_uri(value, field)
    return decode_image(data, field)
