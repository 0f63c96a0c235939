"""The relay backend: serves `channel:` models by calling other image APIs.

An `AsyncBackend`: the worker's relay lane runs many of its calls at once on the event
loop, over one pooled, kept-alive `httpx.AsyncClient`. Each call reads the request's input
images from storage, routes the request over the model's channels (router.py) and returns
decoded images for the worker's post chain, with the channel, the attempts and the
upstream cost. It needs no torch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from pixgate.backends.base import BackendError, BackendResult, ProgressCallback
from pixgate.backends.relay.apis.base import Inputs
from pixgate.backends.relay.router import Router
from pixgate.processing.fetch import parse_networks
from pixgate.spec.catalog import ModelSpec
from pixgate.spec.request import GenerationRequest

if TYPE_CHECKING:
    from pixgate.settings import Settings

DISPATCHED = 0.1  # progress reported once a call is on its way
ANSWERED = 0.9  # ... and once the images are in


class RelayBackend:
    def __init__(self, settings: Settings, storage: Any = None):
        self.settings = settings
        self.storage = storage
        self.router = Router(
            list(settings.channels),
            settings.relay_max_attempts,
            allow=parse_networks(settings.fetch_image_allow),
        )
        self._http: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        """The shared client, made on the loop of the first call."""
        if self._http is None:
            size = self.settings.relay_concurrency
            self._http = httpx.AsyncClient(
                limits=httpx.Limits(
                    max_connections=size * 2,
                    max_keepalive_connections=size,
                    keepalive_expiry=60,
                ),
                follow_redirects=False,
            )
        return self._http

    async def _inputs(self, req: GenerationRequest) -> Inputs:
        if req.image is None:
            return Inputs()
        storage = self.storage

        def read() -> Inputs:
            return Inputs(
                image=storage.read(req.image),
                mask=storage.read(req.mask) if req.mask else None,
            )

        try:
            return await asyncio.to_thread(read)
        except FileNotFoundError as exc:
            raise BackendError("generation_failed", "the input image has expired") from exc

    async def generate(
        self, req: GenerationRequest, spec: ModelSpec, progress: ProgressCallback
    ) -> BackendResult:
        if not spec.channels:
            raise BackendError("model_unavailable", f"model {spec.name} names no channel")
        start = time.perf_counter()
        inputs = await self._inputs(req)
        routed = await self.router.route(
            self.client(), spec, req, inputs, on_dispatch=lambda: progress(DISPATCHED)
        )
        progress(ANSWERED)
        return BackendResult(
            routed.images,
            time.perf_counter() - start,
            channel=routed.channel,
            attempts=routed.attempts,
        )

    # --- the sync Backend protocol, for the registry and the worker's preload ------------
    def max_batch(self, spec: ModelSpec) -> int:
        return 1

    def preload(self, specs: Sequence[ModelSpec]) -> None:
        """Nothing to load: channels are called when jobs come."""

    def close(self) -> None:
        """The client is closed by `aclose`, on its loop."""

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def create(settings: Settings, storage: Any = None) -> RelayBackend:
    """The registry's entry point (pixgate.backends)."""
    return RelayBackend(settings, storage)
