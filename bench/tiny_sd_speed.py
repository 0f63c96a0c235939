"""How long builtin:tiny-sd takes per image on this machine, through pixgate's engine.

    .venv/bin/python bench/tiny_sd_speed.py

The foundation issue budgets 1024x1024 at 4 steps at <= 3 s on the 2-core CPU machine;
the table also shows the engine's cost against a bare pipeline call in the same run.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    import torch

    from pixgate.backends.diffusers.engine import DiffusersEngine
    from pixgate.backends.diffusers.loader import PipelineCache
    from pixgate.core.shaping import shape_request
    from pixgate.spec.catalog import TINY_SD

    with tempfile.TemporaryDirectory() as tmp:
        engine = DiffusersEngine(PipelineCache(Path(tmp)))
        pipe = engine.cache.get(TINY_SD)
        print(f"{'size':>10} {'steps':>5} {'engine s':>9} {'bare s':>8} {'ratio':>6}")
        for size, steps in (("512x512", 4), ("1024x1024", 4), ("1024x1024", 20)):
            req = shape_request(TINY_SD, prompt="a lighthouse", size=size, steps=steps, seed=1)
            engine.generate(req, TINY_SD)  # warm-up
            ours, bare = [], []
            for i in range(5):
                ours.append(engine.generate(req, TINY_SD).inference_seconds)
                start = time.perf_counter()
                with torch.inference_mode():
                    pipe(
                        prompt="a lighthouse",
                        width=req.width,
                        height=req.height,
                        num_inference_steps=steps,
                        generator=[torch.Generator().manual_seed(i)],
                    )
                bare.append(time.perf_counter() - start)
            o, b = statistics.median(ours), statistics.median(bare)
            print(f"{size:>10} {steps:>5} {o:9.3f} {b:8.3f} {o / b:6.3f}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
