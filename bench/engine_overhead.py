"""The engine's cost per image against a plain diffusers loop, in the same run.

For each builtin tiny family (tiny-sd, tiny-sdxl, tiny-sd3, tiny-flux where built) and mode
(txt2img with the model's own scheduler, txt2img with a named sampler, img2img), both sides
make the same image: same pipeline object, size, steps and seed. The engine side is a whole
`DiffusersEngine.generate` call (request handling, per-request scheduler, LoRA switch,
seeded generators, mode pipeline lookup); the baseline is the bare `pipe(...)` call a
diffusers script would make. Rounds alternate between the two and the medians are compared.

    .venv/bin/python bench/engine_overhead.py                 # 256x256, 4 steps, 7 rounds
    .venv/bin/python bench/engine_overhead.py --size 512 --rounds 11

Target (engine issue): overhead <= 5% per image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--families", default="tiny-sd,tiny-sdxl,tiny-sd3,tiny-flux")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from pixgate.backends.diffusers.builtin import BUILDERS
    from pixgate.backends.diffusers.engine import DiffusersEngine, takes_size, with_sampler
    from pixgate.backends.diffusers.loader import PipelineCache
    from pixgate.spec.catalog import TINY_SD
    from pixgate.spec.request import GenerationRequest
    from pixgate.spec.samplers import is_flow_match

    source = Image.radial_gradient("L").convert("RGB").resize((args.size, args.size))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = DiffusersEngine(PipelineCache(Path(tmp), max_loaded=1), lambda _path: source)
        for family in args.families.split(","):
            if family not in BUILDERS:
                print(f"skipping {family}: not a builtin build here", file=sys.stderr)
                continue
            spec = TINY_SD.model_copy(update={"name": family, "source": f"builtin:{family}"})
            base = engine.cache.get(spec)
            flow = is_flow_match(base.scheduler.config)
            sampler = "Euler" if flow else "DPM++ 2M"
            for mode, named in (("txt2img", None), ("txt2img", sampler), ("img2img", None)):
                req = GenerationRequest(
                    kind=mode,
                    model=family,
                    prompt="a lighthouse on a cliff",
                    width=args.size,
                    height=args.size,
                    n=1,
                    seed=7,
                    steps=args.steps,
                    guidance=5.0,
                    sampler=named,
                    image="input.png" if mode == "img2img" else None,
                    strength=0.75 if mode == "img2img" else None,
                )
                pipe = with_sampler(engine.cache.get_for_mode(spec, mode), named)
                extra = {"width": args.size, "height": args.size}
                if mode == "img2img":  # SD 1.x/SDXL img2img take their size from the image
                    extra = {"image": [source], "strength": 0.75}
                    if takes_size(pipe):
                        extra |= {"width": args.size, "height": args.size}

                def bare(pipe=pipe, extra=extra) -> None:
                    with torch.inference_mode():
                        pipe(
                            prompt=["a lighthouse on a cliff"],
                            num_inference_steps=args.steps,
                            guidance_scale=5.0,
                            generator=[torch.Generator().manual_seed(7)],
                            **extra,
                        )

                def ours(req=req, spec=spec) -> None:
                    engine.generate(req, spec)

                bare()
                ours()  # warm-up both
                times: dict[str, list[float]] = {"engine": [], "bare": []}
                for i in range(args.rounds):
                    order = (("engine", ours), ("bare", bare))
                    for name, fn in order if i % 2 == 0 else order[::-1]:
                        start = time.perf_counter()
                        fn()
                        times[name].append(time.perf_counter() - start)
                e, b = statistics.median(times["engine"]), statistics.median(times["bare"])
                rows.append((family, mode + (f" ({named})" if named else ""), e, b))

    print(f"{'model':<10} {'mode':<22} {'engine s':>9} {'bare s':>8} {'overhead':>9}")
    for family, mode, e, b in rows:
        print(f"{family:<10} {mode:<22} {e:9.4f} {b:8.4f} {100 * (e / b - 1):8.1f}%")
    overall = statistics.median(e / b - 1 for *_, e, b in rows)
    print(f"median overhead: {100 * overall:.1f}% (target <= 5%)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
