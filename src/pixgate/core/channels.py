"""Upstream channels as the operator sees them: configuration (never credentials), state,
statistics and margin, enabling and disabling, and one real test call. The admin API and
`pixgate channels` both call these."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pixgate.backends import BackendError
from pixgate.backends.relay.apis.base import Inputs
from pixgate.backends.relay.backend import RelayBackend
from pixgate.db import Database
from pixgate.errors import PixgateError
from pixgate.queue import channels
from pixgate.queue.channels import WindowStats
from pixgate.settings import Settings
from pixgate.spec.catalog import Catalog, ModelSpec, parse_size
from pixgate.spec.channels import ChannelSpec
from pixgate.spec.request import GenerationRequest


@dataclass(frozen=True)
class ChannelView:
    spec: ChannelSpec
    models: list[str]  # catalog models relayed to it
    state: str  # closed | open | half_open | busy | disabled (as its workers last saw it)
    disabled: bool
    reason: str | None
    stats: dict[str, WindowStats]  # "hour", "day"


@dataclass(frozen=True)
class ChannelTest:
    """The outcome of one real call: images made or the error, and how long it took."""

    channel: str
    model: str
    ok: bool
    latency_ms: int
    images: int
    error: str | None


class Channels:
    def __init__(self, settings: Settings, catalog: Catalog, db: Database):
        self._settings = settings
        self._catalog = catalog
        self._db = db

    def spec(self, name: str) -> ChannelSpec:
        channel = self._settings.channel(name)
        if channel is None:
            known = ", ".join(c.name for c in self._settings.channels) or "none configured"
            raise PixgateError("not_found", args_={"path": f"channel {name} (known: {known})"})
        return channel

    def models_of(self, name: str) -> list[ModelSpec]:
        return [m for m in self._catalog if name in m.channels]

    async def list(self) -> list[ChannelView]:
        states = await channels.load_states(self._db)
        views = []
        for spec in self._settings.channels:
            row = states.get(spec.name)
            views.append(
                ChannelView(
                    spec,
                    [m.name for m in self.models_of(spec.name)],
                    row.state if row else "closed",
                    bool(row and row.disabled),
                    row.reason if row else None,
                    await channels.stats(self._db, spec.name),
                )
            )
        return views

    async def get(self, name: str) -> ChannelView:
        self.spec(name)
        return next(v for v in await self.list() if v.spec.name == name)

    async def set_enabled(self, name: str, enabled: bool, actor: str | None = None) -> ChannelView:
        """Enable a channel (clearing a 401/403 disabling) or disable it; relay workers
        apply it within a few seconds."""
        self.spec(name)
        reason = None if enabled else f"disabled by {actor or 'an admin'}"
        await channels.set_enabled(self._db, name, enabled, reason)
        return await self.get(name)

    async def test(self, name: str, model: str | None = None) -> ChannelTest:
        """One real call to the channel: a one-image text-to-image request of `model` (the
        first model relayed to it by default) at its default size and steps. Nothing is
        stored or charged."""
        channel = self.spec(name)
        spec = self._catalog.get(model) if model else next(iter(self.models_of(name)), None)
        if spec is None:
            detail = f"model {model}" if model else f"a model relayed to channel {name}"
            raise PixgateError("not_found", args_={"path": detail})
        width, height = parse_size(spec.default_size)
        req = GenerationRequest(
            model=spec.name,
            prompt="a red apple on a white table",
            width=width,
            height=height,
            n=1,
            seed=1,
            steps=spec.default_steps,
            guidance=7.5,
        )
        backend = RelayBackend(self._settings)
        start = time.perf_counter()
        try:
            only = spec.model_copy(update={"channels": [name]})
            routed = await backend.router.route(backend.client(), only, req, Inputs())
        except BackendError as exc:
            ms = round((time.perf_counter() - start) * 1000)
            return ChannelTest(channel.name, spec.name, False, ms, 0, exc.message)
        finally:
            await backend.aclose()
        ms = round((time.perf_counter() - start) * 1000)
        made = sum(1 for image in routed.images if image is not None)
        return ChannelTest(channel.name, spec.name, True, ms, made, None)
