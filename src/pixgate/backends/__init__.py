"""Backends, and the registry that picks one from a model's `source`.

- `builtin:<name>`, a hub id (`org/name`) or a local path -> `diffusers` (needs the
  `pixgate[engine]` extra: torch, diffusers, transformers);
- `fake:<options>` -> `fake` (solid colours, for tests and benchmarks; see backends/fake.py);
- `channel:<name>` (or a model's `channels = [...]`) -> `channel`, the relay backend
  (pixgate.backends.relay: other image APIs, no torch). It is an `AsyncBackend`: the
  worker runs its jobs concurrently on the event loop rather than on the engine thread.

Backend modules are imported by name, when first needed, so importing this package (as the
worker does) never imports torch: a worker serves the backends its machine has. Each
backend module has `create(settings, storage) -> Backend`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pixgate.backends.base import (
    AsyncBackend,
    Backend,
    BackendError,
    BackendResult,
    StepCallback,
    UpstreamAttempt,
)
from pixgate.backends.fake import FakeOptionsError, parse_source
from pixgate.spec.catalog import ModelSpec

if TYPE_CHECKING:
    from pixgate.settings import Settings

__all__ = [
    "AsyncBackend",
    "Backend",
    "BackendError",
    "BackendKind",
    "BackendResult",
    "Backends",
    "StepCallback",
    "UpstreamAttempt",
    "backend_kind",
    "check_catalog",
    "check_source",
    "is_relayed",
]

BackendKind = Literal["diffusers", "fake", "channel"]

# kind -> the module whose `create(settings, storage)` makes it; by name, never imported here
MODULES: dict[str, str] = {
    "diffusers": "pixgate.backends.diffusers.backend",
    "fake": "pixgate.backends.fake",
    "channel": "pixgate.backends.relay.backend",
}
ENGINE_PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "peft", "safetensors")
INSTALL_ENGINE = "pip install 'pixgate[engine]'"


def backend_kind(spec: ModelSpec) -> BackendKind:
    """Which backend serves the model."""
    kind = spec.source_kind
    if kind in ("fake", "channel"):
        return kind
    return "diffusers"


def is_relayed(spec: ModelSpec) -> bool:
    """Whether the model is served by upstream channels (the worker's relay lane)."""
    return backend_kind(spec) == "channel"


def check_source(source: str) -> None:
    """Refuse a source whose backend options do not parse (ValueError naming the option).
    A worker checks its catalog when it is made, so a typo stops the server at startup
    instead of failing every job."""
    if source.startswith("fake:"):
        try:
            parse_source(source)
        except FakeOptionsError as exc:
            raise ValueError(str(exc)) from None


def check_catalog(specs: Iterable[ModelSpec]) -> None:
    """`check_source` for every model; the message names the model."""
    for spec in specs:
        try:
            check_source(spec.source)
        except ValueError as exc:
            raise ValueError(f"model {spec.name}: {exc}") from None


class Backends:
    """The backends of one worker, each made once, when a model first needs it.

    Thread-safe: the worker asks from its engine thread and from the event loop's helper
    threads. A backend that cannot be made here (its packages are not installed) fails its
    models' jobs as `model_unavailable` with a one-line message saying what to install."""

    def __init__(self, settings: Settings, storage: Any = None):
        self.settings = settings
        self.storage = storage
        self._made: dict[str, Backend] = {}
        self._refused: dict[str, str] = {}  # kind -> why it cannot be made on this machine
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec) -> Backend:
        """The backend serving `spec`, made on first use; BackendError if there is none."""
        kind = backend_kind(spec)
        try:
            check_source(spec.source)
        except ValueError as exc:
            raise BackendError("model_unavailable", f"model {spec.name}: {exc}") from None
        with self._lock:
            if kind in self._made:
                return self._made[kind]
            if kind in self._refused:
                raise BackendError("model_unavailable", f"model {spec.name}: {self._refused[kind]}")
            try:
                backend = importlib.import_module(MODULES[kind]).create(self.settings, self.storage)
            except ImportError as exc:
                missing = (exc.name or "").split(".")[0]
                if missing not in ENGINE_PACKAGES:
                    raise
                self._refused[kind] = (
                    f"the {kind} backend needs {missing}, which this machine lacks: "
                    f"{INSTALL_ENGINE}"
                )
                raise BackendError(
                    "model_unavailable", f"model {spec.name}: {self._refused[kind]}"
                ) from None
            self._made[kind] = backend
            return backend

    def made(self) -> dict[str, Backend]:
        """The backends made so far, by kind."""
        with self._lock:
            return dict(self._made)

    def close(self) -> None:
        for backend in self.made().values():
            backend.close()
