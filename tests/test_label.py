"""The TC260 implicit label (processing/label.py): spliced into PNG, JPEG and WebP without
touching the image data, read back by Pillow, verified against the pixels."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pixgate.processing.encode import encode_image
from pixgate.processing.label import NS, embed_xmp, inspect_file, label_file, read_label

KEY = b"server-secret"


def picture(mode: str = "RGB") -> Image.Image:
    image = Image.linear_gradient("L").resize((96, 64)).convert(mode)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize((96, 64)))
    return image


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_a_label_round_trips_and_verifies_in_each_format(fmt):
    plain = encode_image(picture(), fmt)
    labelled = label_file(plain, fmt, KEY, "job1-0", producer="pixgate-test")
    with Image.open(io.BytesIO(labelled)) as opened:
        opened.load()
        label = read_label(opened)
        assert opened.size == (96, 64)
        with Image.open(io.BytesIO(plain)) as original:  # the image data is untouched
            assert opened.tobytes() == original.convert(opened.mode).tobytes()
    assert label["Label"] == "1" and label["ProduceID"] == "job1-0"
    assert label["ContentProducer"] == "pixgate-test" and len(label["ReservedCode1"]) == 64
    assert set(label) == {
        "Label", "ContentProducer", "ProduceID", "ReservedCode1",
        "ContentPropagator", "PropagateID", "ReservedCode2",
    }  # fmt: skip
    assert NS.encode() in labelled
    assert inspect_file(labelled, KEY).verdict == "valid"
    assert inspect_file(labelled, b"another server").verdict == "invalid"
    assert inspect_file(plain, KEY).verdict == "absent"


def test_webp_with_alpha_and_a_copied_label_on_other_pixels():
    plain = encode_image(picture("RGBA"), "png")
    labelled = label_file(plain, "png", KEY, "job2-0", producer="p")
    assert inspect_file(labelled, KEY).verdict == "valid"
    with Image.open(io.BytesIO(labelled)) as opened:
        label = read_label(opened)
    webp = encode_image(picture("RGBA"), "webp")
    assert inspect_file(label_file(webp, "webp", KEY, "w-0", producer="p"), KEY).verdict == "valid"
    # the same label on other pixels: the HMAC no longer matches
    other = Image.new("RGB", (96, 64), (10, 20, 30))
    forged = embed_xmp(encode_image(other, "png"), "png", _packet(label))
    verdict = inspect_file(forged, KEY)
    assert verdict.verdict == "invalid" and "pixels" in verdict.reason


def test_unreadable_or_hostile_packets_are_no_label():
    entity = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    for packet in (b"not xml <", entity, b"<x/>" + b" " * 70_000):
        data = embed_xmp(encode_image(picture(), "png"), "png", packet)
        assert inspect_file(data, KEY).verdict == "absent"
    assert inspect_file(b"not an image at all", KEY).verdict == "absent"


def _packet(label: dict) -> bytes:
    from pixgate.processing.label import xmp_packet

    return xmp_packet(label)


def test_the_label_key_is_derived_from_the_server_secret():
    from pixgate.processing.label import label_key

    assert label_key(b"a") == label_key(b"a") != label_key(b"b")
    assert label_key(b"a") != b"a"
