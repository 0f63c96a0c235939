"""Calling the relay backend's channel-type modules in tests: the fake upstreams of every
type (fixtures `fakes`, module-scoped, and `up`, the one named by `by_type`'s parameter,
reset), a small request, and `run` / `fails`, which call a type's `generate` through a
channel and return its images or its failure (checked to hold no credential). A test
module gets the fixtures with `fakes, up = fixtures()`."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from pixgate.backends.relay.apis import adapter
from pixgate.backends.relay.apis.base import Call, Inputs, UpstreamFailure, UpstreamImage
from pixgate.spec.channels import CHANNEL_TYPES, ChannelSpec
from pixgate.spec.request import GenerationRequest
from tests.images import gradient_png
from tests.upstreams import FakeUpstream

MULTI = ("openai", "siliconflow", "a1111")  # n images in one call
ONE_PER_CALL = ("volcengine", "ark")


def fixtures() -> tuple[Any, Any]:
    """A test module's `fakes` (every type's fake upstream, started once for the module)
    and `up` (the fake named by the test's `by_type` parameter, reset to ok and b64):
    `fakes, up = fixtures()` at the module's top level."""

    @pytest.fixture(scope="module")
    def fakes() -> Iterator[dict[str, FakeUpstream]]:
        started = {t: FakeUpstream(t).start() for t in CHANNEL_TYPES}
        yield started
        for fake in started.values():
            fake.stop()

    @pytest.fixture
    def up(request: pytest.FixtureRequest, fakes: dict[str, FakeUpstream]) -> FakeUpstream:
        fake = fakes[request.param]
        fake.reset()
        fake.response = "b64"
        return fake

    return fakes, up


def by_type(*types: str) -> pytest.MarkDecorator:
    """Run the test once per type named (all types: none named), with `up` its fake."""
    return pytest.mark.parametrize("up", types or CHANNEL_TYPES, indirect=True)


def request(kind: str = "txt2img", n: int = 1, **fields) -> GenerationRequest:
    values = dict(model="m", prompt="a lighthouse", width=256, height=256, seed=41, steps=6)
    return GenerationRequest(kind=kind, n=n, guidance=4.5, **{**values, **fields})


def mask_png(w: int = 256, h: int = 256) -> bytes:
    """White (repaint) on the left half, black on the right."""
    mask = Image.new("L", (w, h), 0)
    mask.paste(255, (0, 0, w // 2, h))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


def run(
    channel: ChannelSpec,
    req: GenerationRequest | None = None,
    inputs: Inputs | None = None,
    model: str = "up-model",
) -> list[UpstreamImage]:
    async def go() -> list[UpstreamImage]:
        async with httpx.AsyncClient() as http:
            call = Call(http, channel, model, req or request(), inputs or Inputs())
            return await adapter(channel.type)(call)

    return asyncio.run(go())


def fails(channel: ChannelSpec, req: GenerationRequest | None = None, **kw) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as caught:
        run(channel, req, **kw)
    for secret in channel.secrets():
        assert secret not in caught.value.message
    return caught.value


def decoded(image: UpstreamImage) -> Image.Image:
    data = image.data if image.data is not None else httpx.get(image.url or "").content
    picture = Image.open(io.BytesIO(data))
    picture.load()
    return picture


def with_image(kind: str = "img2img", **fields) -> tuple[GenerationRequest, Inputs]:
    mask = mask_png() if kind == "inpaint" else None
    return request(kind, **fields), Inputs(image=gradient_png(), mask=mask)
