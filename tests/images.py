"""Input images for tests, and reading back the images a server returns."""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image


def gradient(w: int = 256, h: int = 256, alpha: bool = False) -> Image.Image:
    """A left-to-right grey ramp: structure that img2img visibly keeps."""
    x = np.linspace(0, 255, w, dtype=np.uint8)
    image = Image.fromarray(np.stack([np.tile(x, (h, 1))] * 3, axis=-1))
    return image.convert("RGBA") if alpha else image


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def gradient_png(w: int = 256, h: int = 256) -> bytes:
    return png(gradient(w, h))


def fetch_image(url: str) -> Image.Image:
    """Download an image URL the server returned and decode it."""
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200, r.text
    image = Image.open(io.BytesIO(r.content))
    image.load()
    return image
