"""The implicit AI-generated label of GB 45438-2025: XMP under the TC260 namespace, one
property `TC260:AIGC` whose value is a JSON object (`Label`, `ContentProducer`,
`ProduceID`, `ReservedCode1`, `ContentPropagator`, `PropagateID`, `ReservedCode2`).

`ReservedCode1` is an HMAC-SHA256, keyed by the server's secret, over the image id
(`ProduceID`) and the pixels as the file decodes, so a label can be verified, and a label
copied onto other pixels (or pixels edited under a kept label) fails.

The packet is spliced into the encoded file rather than passed to the encoder, so the
image data is untouched and JPEG/WebP are not encoded twice: an `iTXt` chunk with keyword
`XML:com.adobe.xmp` right after PNG's IHDR, an APP1 segment right after JPEG's SOI, an
`XMP ` chunk in WebP's extended (VP8X) format. Reading goes through Pillow, which finds
all three.

The worker's encode step calls `label_file` for every image when `aigc_label` is on (the
default): generated images, relayed ones and marked copies alike.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Literal
from xml.etree import ElementTree

from PIL import Image

NS = "http://www.tc260.org.cn/ns/AIGC/1.0/"
PREFIX = "TC260"
FIELDS = (
    "Label",
    "ContentProducer",
    "ProduceID",
    "ReservedCode1",
    "ContentPropagator",
    "PropagateID",
    "ReservedCode2",
)
MAX_XMP = 64 * 1024  # a label packet is a few hundred bytes; larger ones are not parsed
JPEG_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"

Verdict = Literal["valid", "invalid", "absent"]


def label_key(server_secret: bytes) -> bytes:
    """The key labels are signed with, derived from the server's secret (the one image
    URLs are signed with) so that neither can stand in for the other."""
    return hmac.new(server_secret, b"pixgate tc260 aigc label", hashlib.sha256).digest()


def pixel_mac(key: bytes, image_id: str, image: Image.Image) -> str:
    """The HMAC-SHA256 (hex) over the image id and the pixels (as RGB or RGBA bytes)."""
    mode = "RGBA" if "A" in image.getbands() else "RGB"
    pixels = image if image.mode == mode else image.convert(mode)
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(image_id.encode())
    mac.update(f"\0{mode}\0{pixels.width}x{pixels.height}\0".encode())
    mac.update(pixels.tobytes())
    return mac.hexdigest()


def xmp_packet(fields: dict[str, str]) -> bytes:
    """The XMP packet holding `fields` as the JSON value of TC260:AIGC."""
    value = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    root = ElementTree.Element("{adobe:ns:meta/}xmpmeta")
    rdf = ElementTree.SubElement(root, "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}RDF")
    ElementTree.SubElement(
        rdf,
        "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description",
        {"{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about": "", f"{{{NS}}}AIGC": value},
    )
    ElementTree.register_namespace("x", "adobe:ns:meta/")
    ElementTree.register_namespace("rdf", "http://www.w3.org/1999/02/22-rdf-syntax-ns#")
    ElementTree.register_namespace(PREFIX, NS)
    body = ElementTree.tostring(root, encoding="unicode")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>' + body + '<?xpacket end="w"?>'
    ).encode()


# --- writing -------------------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _embed_png(data: bytes, xmp: bytes) -> bytes:
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length/type, IHDR data, CRC
    text = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp  # keyword, uncompressed, no language
    return data[:ihdr_end] + _png_chunk(b"iTXt", text) + data[ihdr_end:]


def _embed_jpeg(data: bytes, xmp: bytes) -> bytes:
    payload = JPEG_XMP_HEADER + xmp
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("XMP packet too large for one JPEG APP1 segment")
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


def _embed_webp(data: bytes, xmp: bytes, size: tuple[int, int], alpha: bool) -> bytes:
    body = data[12:]
    if body[:4] == b"VP8X":
        flags = body[8] | 0x04
        body = body[:8] + bytes([flags]) + body[9:]
    else:  # simple format: move to the extended one, which may carry metadata
        w, h = size
        flags = 0x04 | (0x10 if alpha else 0)
        header = (
            bytes([flags, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        )
        body = _riff_chunk(b"VP8X", header) + body
    body += _riff_chunk(b"XMP ", xmp)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def embed_xmp(data: bytes, fmt: str, xmp: bytes) -> bytes:
    """`data` (a file pixgate encoded, with no XMP) with the packet spliced in."""
    if fmt == "png":
        return _embed_png(data, xmp)
    if fmt == "jpeg":
        return _embed_jpeg(data, xmp)
    if fmt == "webp":
        with Image.open(io.BytesIO(data)) as image:
            size, alpha = image.size, "A" in image.getbands()
        return _embed_webp(data, xmp, size, alpha)
    raise ValueError(f"no XMP embedding for format {fmt!r}")


def label_file(
    data: bytes,
    fmt: str,
    key: bytes,
    image_id: str,
    producer: str,
    propagator: str = "",
    propagate_id: str = "",
    source: Image.Image | None = None,
    origin: dict[str, Any] | None = None,
) -> bytes:
    """An encoded image with its implicit label: the pixels it decodes to are what
    `ReservedCode1` signs (for JPEG and WebP, the lossy result, not the source). `source`:
    the image PNG data was encoded from, signed as it is (PNG is lossless: no decode).
    `origin`: the label the input image carried (img2img, edits, relayed results); the file
    still gets exactly one label, this one, with the old producer recorded in
    `ReservedCode2` (see `origin_code`)."""
    if fmt == "png" and source is not None:
        mac = pixel_mac(key, image_id, source)
    else:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mac = pixel_mac(key, image_id, image)
    fields = {
        "Label": "1",
        "ContentProducer": producer,
        "ProduceID": image_id,
        "ReservedCode1": mac,
        "ContentPropagator": propagator,
        "PropagateID": propagate_id,
        "ReservedCode2": origin_code(origin),
    }
    return embed_xmp(data, fmt, xmp_packet(fields))


def origin_code(origin: dict[str, Any] | None) -> str:
    """`ReservedCode2` of a file made from a labelled input: a JSON object naming what it
    came from, `{"SourceProducer": ..., "SourceProduceID": ...}` (the input label's
    ContentProducer and ProduceID); empty when the input carried no label."""
    if not origin:
        return ""
    source = {
        "SourceProducer": str(origin.get("ContentProducer", ""))[:200],
        "SourceProduceID": str(origin.get("ProduceID", ""))[:200],
    }
    return json.dumps(source, ensure_ascii=False, separators=(",", ":"))


def keep_xmp(data: bytes, fmt: str, image: Image.Image) -> bytes:
    """`data` (an input image pixgate re-encoded for storage) with the XMP packet `image`
    arrived with, so the worker still sees the input's label; unchanged when it had none
    or the packet is not a readable TC260 label."""
    xmp = _xmp_of(image)
    if xmp is None or read_label(image) is None:
        return data
    return embed_xmp(data, fmt, xmp)


# --- reading -------------------------------------------------------------------------------
def _xmp_of(image: Image.Image) -> bytes | None:
    info = image.info
    value = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else bytes(value)


def read_label(image: Image.Image) -> dict[str, Any] | None:
    """The TC260 label of an opened image, or None when it carries none (or an unreadable
    one: malformed XML or JSON, or a packet over MAX_XMP bytes)."""
    xmp = _xmp_of(image)
    if xmp is None or len(xmp) > MAX_XMP or b"<!DOCTYPE" in xmp or b"<!ENTITY" in xmp:
        return None
    try:
        root = ElementTree.fromstring(xmp.decode("utf-8", "replace").lstrip("\ufeff"))
    except ElementTree.ParseError:
        return None
    attr = f"{{{NS}}}AIGC"
    for element in root.iter():
        raw = element.get(attr) or (element.text if element.tag == attr else None)
        if raw:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


@dataclass(frozen=True)
class Inspection:
    verdict: Verdict
    label: dict[str, Any] | None
    reason: str


def inspect_file(data: bytes, key: bytes) -> Inspection:
    """Whether the file carries a label this server made for exactly these pixels."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            label = read_label(image)
            if label is None:
                return Inspection("absent", None, "no TC260 AIGC label")
            image_id = str(label.get("ProduceID", ""))
            expected = pixel_mac(key, image_id, image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return Inspection("absent", None, f"not a readable image: {type(exc).__name__}")
    if str(label.get("Label")) != "1":
        return Inspection("invalid", label, "Label is not 1")
    if not hmac.compare_digest(expected, str(label.get("ReservedCode1", ""))):
        return Inspection("invalid", label, "ReservedCode1 does not match these pixels")
    return Inspection("valid", label, "signed by this server for these pixels")
