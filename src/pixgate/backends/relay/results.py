"""Turn what an upstream returned into pixgate's own images: download URLs through the
SSRF guard (http(s) only, size and time limits), decode bytes with the same bomb-safe
decoder as client uploads. The worker then runs them through the post chain and storage
like locally made images, so clients never see an upstream URL."""

from __future__ import annotations

import asyncio
import ipaddress
from urllib.parse import urlsplit

import structlog
from PIL import Image

from pixgate.backends.relay.apis.base import UpstreamFailure, UpstreamImage
from pixgate.errors import PixgateError
from pixgate.processing.fetch import FetchPolicy, FetchRefused, IPNetwork, fetch_image
from pixgate.processing.inputs import MAX_INPUT_BYTES, decode_image_async
from pixgate.spec.channels import ChannelSpec

log = structlog.get_logger("pixgate.relay")

FIELD = "upstream image"


async def channel_networks(channel: ChannelSpec) -> tuple[IPNetwork, ...]:
    """The addresses of the channel's own host: its result URLs may point there even when
    it is on a private network (the operator configured it), and nowhere else private."""
    host = urlsplit(channel.base_url).hostname or ""
    try:
        return (ipaddress.ip_network(host),)
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return ()
    return tuple({ipaddress.ip_network(info[4][0]) for info in infos})


async def _one(image: UpstreamImage, policy: FetchPolicy) -> Image.Image:
    data = image.data
    if data is None:
        if image.url is None:
            raise UpstreamFailure("bad_response", "an image entry has neither data nor a URL")
        try:
            data = await fetch_image(image.url, policy)
        except FetchRefused as exc:
            raise UpstreamFailure("bad_response", f"image URL unusable: {exc}") from exc
    try:
        return await decode_image_async(data, FIELD)
    except PixgateError as exc:
        raise UpstreamFailure("bad_response", f"not a usable image: {exc.message()}") from exc


async def materialize(
    images: list[UpstreamImage], policy: FetchPolicy
) -> tuple[list[Image.Image], list[str]]:
    """The decoded images (in order, unusable ones left out) and why each left-out one was
    unusable. Raises `bad_response` when none is usable."""
    if not images:
        raise UpstreamFailure("bad_response", "the upstream answered with no images")
    results = await asyncio.gather(*(_one(i, policy) for i in images), return_exceptions=True)
    decoded: list[Image.Image] = []
    problems: list[str] = []
    for result in results:
        if isinstance(result, UpstreamFailure):
            problems.append(result.message)
        elif isinstance(result, BaseException):
            raise result
        else:
            decoded.append(result)
    if not decoded:
        raise UpstreamFailure("bad_response", problems[0])
    return decoded, problems


def download_policy(allow: tuple[IPNetwork, ...], timeout: float) -> FetchPolicy:
    """How result URLs are downloaded: the server's allow-list plus the channel's host."""
    return FetchPolicy(allow=allow, deadline_seconds=timeout, max_bytes=MAX_INPUT_BYTES)
