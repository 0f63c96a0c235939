"""One module per channel type, each speaking one upstream's wire format: `openai`,
`siliconflow`, `volcengine`, `ark`, `a1111` (the names of `pixgate.spec.channels`'
ChannelType). `base` holds what they share: the call, the images, the failures, `send`."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pixgate.spec.channels import CHANNEL_TYPES

if TYPE_CHECKING:
    from pixgate.backends.relay.apis.base import Call, UpstreamImage

Generate = Callable[["Call"], Awaitable[list["UpstreamImage"]]]


def adapter(type: str) -> Generate:
    """The `generate` coroutine function of channel type `type`."""
    if type not in CHANNEL_TYPES:
        raise ValueError(f"unknown channel type {type!r}; known: {', '.join(CHANNEL_TYPES)}")
    module = importlib.import_module(f"{__name__}.{type}")
    return module.generate
