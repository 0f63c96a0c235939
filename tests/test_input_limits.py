"""Input images are judged by their header before any pixel is decoded, and decoding,
mask extraction and re-encoding run off the event loop: a server busy with two 16-megapixel
uploads still answers `/healthz` at once."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from pixgate.errors import PixgateError
from pixgate.processing.inputs import MAX_INPUT_PIXELS, MAX_INPUT_SIDE, decode_image
from pixgate.settings import load_settings
from tests.conftest import RunningServer, free_port, start_server
from tests.images import gradient

EDITS = "/v1/images/edits"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def tall_png(width: int = 1, height: int = 16_777_216) -> bytes:
    """A valid greyscale PNG of width x height black pixels (1x16,777,216: ~32 KB on disk,
    ~600 MB and seconds to decode), written by hand since Pillow would have to build it."""
    rows = zlib.compress(b"\x00" * ((width + 1) * height), 9)  # filter byte + pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def srv(tmp_path_factory, models_dir) -> Iterator[RunningServer]:
    settings = load_settings(
        None,
        data_dir=tmp_path_factory.mktemp("data"),
        models_path=models_dir,
        port=free_port(),
        demo=True,
        log_level="WARNING",
        sweep_interval_seconds=3600,
        run_workers=False,  # decoding happens at admission; the tasks just queue
    )
    running = start_server(settings)
    yield running
    running.stop()


def edit(c: httpx.Client, data: bytes, name: str = "in.png") -> httpx.Response:
    form = {"prompt": "x", "model": "tiny-sd", "async": "true"}
    return c.post(EDITS, files={"image": (name, data, "image/png")}, data=form)


def test_a_one_pixel_wide_png_is_refused_from_its_header(srv):
    data = tall_png()
    assert len(data) < 40_000
    started = time.perf_counter()
    with pytest.raises(PixgateError) as refused:
        decode_image(data, "image")
    assert time.perf_counter() - started < 0.5  # decoding it took ~4 s
    assert "1x16777216" in refused.value.message("en")
    with srv.client(srv.create_key()) as c:
        started = time.perf_counter()
        r = edit(c, data)
        elapsed = time.perf_counter() - started
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "image"
    for allowed in (str(MAX_INPUT_SIDE), str(MAX_INPUT_PIXELS), "each side", "1x16777216"):
        assert allowed in error["message"]
    assert elapsed < 2


def test_each_side_is_limited_not_only_the_pixel_count(srv):
    long = io.BytesIO()
    Image.new("L", (MAX_INPUT_SIDE + 1, 2)).save(long, "PNG")
    with srv.client(srv.create_key()) as c:
        r = edit(c, long.getvalue())
        assert r.status_code == 400 and r.json()["error"]["param"] == "image"
        assert f"{MAX_INPUT_SIDE + 1}x2" in r.json()["error"]["message"]
        square = io.BytesIO()
        gradient(MAX_INPUT_SIDE // 8, 64).save(square, "PNG")
        assert edit(c, square.getvalue()).status_code == 202


def sixteen_megapixels() -> bytes:
    """A 4096x4096 JPEG (~0.5 MB): ~0.1 s to decode and ~0.5 s to store as PNG."""
    buf = io.BytesIO()
    gradient(4096, 4096).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _small_jpeg() -> bytes:
    buf = io.BytesIO()
    gradient(256, 256).save(buf, "JPEG")
    return buf.getvalue()


def slowest_healthz_during_uploads(srv: RunningServer, data: bytes, key: str) -> float:
    """Seconds the slowest of many `/healthz` probes took while two uploads of `data`
    were decoded and stored; both uploads must be accepted."""
    answers: list[int] = []

    def upload() -> None:
        with srv.client(key) as c:
            answers.append(edit(c, data, "big.jpg").status_code)

    uploads = [threading.Thread(target=upload) for _ in range(2)]
    probes: list[float] = []
    with httpx.Client(base_url=srv.url, timeout=30) as probe:
        probe.get("/healthz")  # connected and warm
        for t in uploads:
            t.start()
        while any(t.is_alive() for t in uploads):
            started = time.perf_counter()
            assert probe.get("/healthz").status_code == 200
            probes.append(time.perf_counter() - started)
            time.sleep(0.01)
    for t in uploads:
        t.join()
    assert answers == [202, 202]
    assert len(probes) >= 5, "the uploads finished before /healthz could be probed"
    return max(probes)


def test_healthz_stays_fast_while_two_16_megapixel_uploads_decode(srv):
    """Up to five tries, one of which must keep every probe under 50 ms: on a busy shared
    machine one probe can lose tens of milliseconds to the scheduler or a garbage-collector
    pass, while pixel work held on the event loop costs every try hundreds (~650 ms here)."""
    data = sixteen_megapixels()
    key = srv.create_key()
    with srv.client(key) as c:  # first-request costs (imports, statement caches) paid
        assert edit(c, _small_jpeg(), "warm.jpg").status_code == 202
    slowest: list[float] = []
    for _ in range(5):
        slowest.append(slowest_healthz_during_uploads(srv, data, key))
        if slowest[-1] < 0.05:
            break
    assert slowest[-1] < 0.05, f"slowest /healthz per try: {[round(s * 1000) for s in slowest]} ms"
