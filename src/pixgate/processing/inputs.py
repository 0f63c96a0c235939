"""Input images for img2img, inpainting and variations: decoded safely, checked, and kept
in storage so a worker on another machine reads exactly what the client sent.

Defences: a byte limit before decoding, Pillow's decompression-bomb check turned into a
400, limits on each side and on the pixel count checked from the header (before any pixel
is decoded: a 32 KB PNG can declare 1x16,777,216 pixels and cost seconds and ~600 MB to
decode), a short list of formats, and EXIF orientation applied so phone photos are the
right way up. URL inputs are downloaded through the guarded fetcher (`fetch.py`).

Decoding, mask extraction and re-encoding take from tens of milliseconds to seconds for
large images: the `*_async` helpers run them on the pixel pool (`offload.py`) so the event
loop keeps serving other requests meanwhile (Pillow releases the GIL while it works on
pixels).
"""

from __future__ import annotations

import base64
import binascii
import io
import uuid
import warnings

import structlog
from PIL import Image, ImageOps

from pixgate.errors import PixgateError, invalid
from pixgate.processing.fetch import FetchPolicy, FetchRefused, fetch_image, parse_networks
from pixgate.processing.label import keep_xmp, read_label
from pixgate.processing.offload import off_loop
from pixgate.settings import Settings
from pixgate.storage.base import Storage

MAX_INPUT_BYTES = 20 * 1024 * 1024
MAX_INPUT_PIXELS = 4096 * 4096
MAX_INPUT_SIDE = 8192
FORMATS = {"PNG", "JPEG", "WEBP"}

log = structlog.get_logger("pixgate.processing.inputs")


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
            check_dimensions(image.width, image.height, field)
            image.load()  # only now are pixels decoded
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise invalid(field, "is too large to decode safely", "图片过大,无法安全解码") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's "cannot identify image"
        raise invalid(field, "is not a readable image", "不是可读取的图片") from exc
    return ImageOps.exif_transpose(image)


def check_dimensions(width: int, height: int, field: str) -> None:
    """A 400 naming `field` and the allowed range unless the size (read from the file's
    header) is within the limits on each side and on the pixel count."""
    if max(width, height) > MAX_INPUT_SIDE or width * height > MAX_INPUT_PIXELS:
        raise invalid(
            field,
            f"must have at most {MAX_INPUT_SIDE} pixels on each side and {MAX_INPUT_PIXELS} "
            f"pixels in all (got {width}x{height})",
            f"每边不能超过 {MAX_INPUT_SIDE} 像素,总像素数不能超过 {MAX_INPUT_PIXELS}"
            f"(收到 {width}x{height})",
        )


async def decode_image_async(data: bytes, field: str) -> Image.Image:
    """`decode_image` on the pixel pool."""
    return await off_loop(decode_image, data, field)


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


async def mask_from_alpha_async(image: Image.Image, any_mode: bool = False) -> Image.Image | None:
    """`mask_from_alpha` on the pixel pool; `any_mode` reads transparency from any mode
    (palette, grey + alpha) by converting to RGBA first, as uploaded masks need."""

    def work() -> Image.Image | None:
        return mask_from_alpha(image.convert("RGBA") if any_mode else image)

    return await off_loop(work)


def save_input(storage: Storage, image: Image.Image, role: str) -> str:
    """Keep an input image (as PNG) for the worker; returns its storage path. A TC260
    label the upload carried is kept in the stored file, so the output can record the
    input's producer (processing/label.py `origin_code`)."""
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=1)
    data = keep_xmp(buf.getvalue(), "png", image)
    return storage.save(f"in-{uuid.uuid4().hex}-{role}.png", data).path


async def save_input_async(
    storage: Storage, image: Image.Image, role: str, mode: str | None = None
) -> str:
    """`save_input` on the pixel pool, converting to `mode` ("RGB", "L") there first."""

    def work() -> str:
        return save_input(storage, image.convert(mode) if mode else image, role)

    return await off_loop(work)


def stored_label(storage: Storage, path: str) -> dict | None:
    """The TC260 label a stored input image carries (kept by `save_input`), or None. Only
    the file's header is parsed, not its pixels."""
    try:
        with Image.open(io.BytesIO(storage.read(path))) as image:
            return read_label(image)
    except (OSError, ValueError):
        return None


def open_input(storage: Storage, path: str) -> Image.Image:
    image = Image.open(io.BytesIO(storage.read(path)))
    image.load()
    return image


def fetch_policy(settings: Settings) -> FetchPolicy:
    """How image URLs are downloaded on this server (allow-list, deadline, byte cap)."""
    return FetchPolicy(
        allow=parse_networks(settings.fetch_image_allow),
        deadline_seconds=settings.fetch_image_timeout_seconds,
        max_bytes=MAX_INPUT_BYTES,
    )


def unfetchable(field: str, policy: FetchPolicy) -> PixgateError:
    """The one answer for every URL that yields no image: refused address, closed port,
    timeout, HTTP error, too big, not an image. One text, so the answer says nothing
    about what (if anything) listens at the address."""
    seconds = f"{policy.deadline_seconds:g}"
    return invalid(
        field,
        "could not be fetched: it must be a public http(s) URL that answers 200 with a "
        f"PNG, JPEG or WebP file of at most {policy.max_bytes} bytes within {seconds} s",
        "无法获取:必须是公网可访问的 http(s) 链接,并在 "
        f"{seconds} 秒内以 200 返回不超过 {policy.max_bytes} 字节的 PNG、JPEG 或 WebP 文件",
    )


async def image_from_field(value: str, field: str, settings: Settings) -> Image.Image:
    """A JSON `image` field (data URI, bare base64 or URL) -> a decoded input image."""
    if not value.startswith(("http://", "https://")):  # base64 of up to 20 MB: off the loop too
        return await off_loop(lambda: decode_image(decode_data_uri(value, field), field))
    if not settings.fetch_image_urls:
        raise invalid(
            field,
            "URLs are disabled on this server; send a data URI",
            "此服务器不接受链接,请发送 data URI",
        )
    policy = fetch_policy(settings)
    try:
        data = await fetch_image(value, policy)
    except FetchRefused as exc:
        log.info("image url refused", field=field, url=value[:200], reason=str(exc))
        raise unfetchable(field, policy) from exc
    return await decode_image_async(data, field)
