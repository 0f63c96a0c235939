"""Engine wrappers that inject failures into a running server's worker."""

from __future__ import annotations


class WrappedEngine:
    """Delegates everything (cache, max_batch, ...) to the real engine."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)


class BrokenEngine(WrappedEngine):
    """Every generation raises."""

    def generate_batch(self, *_args, **_kwargs):
        raise RuntimeError("injected failure")


class DroppingEngine(WrappedEngine):
    """Drops every second image of each job, as a safety filter or a per-image failure
    would; `drop` can be overridden to drop others."""

    def drop(self, images):
        return [im if i % 2 == 0 else None for i, im in enumerate(images)]

    def generate_batch(self, reqs, spec, on_step=None):
        results = self.inner.generate_batch(reqs, spec, on_step)
        for result in results:
            result.images = self.drop(result.images)
        return results
