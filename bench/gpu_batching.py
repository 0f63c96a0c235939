"""Dynamic batching on a GPU: pixgate's images/s at concurrency 1, 4 and 16 against a
sequential diffusers loop and the best fixed-batch diffusers call, in the same run.

The pipeline is a full-size random-weight build (`sd15-arch` at 512x512 or `sdxl-arch` at
1024x1024; compute does not depend on weight values), built once in float16 on the GPU and
saved to a temporary directory. Baselines call that pipeline directly in this process;
pixgate then serves the same directory as a `[[models]]` entry with `max_batch` (a real
`pixgate serve` subprocess, SQLite, in-process worker) and concurrent httpx clients send
requests with different prompts and seeds.

    .venv/bin/python bench/gpu_batching.py --model sd15-arch            # 512x512, 25 steps
    .venv/bin/python bench/gpu_batching.py --model sdxl-arch --steps 20
    .venv/bin/python bench/gpu_batching.py --smoke                      # tiny-sd on CPU

Targets (engine issue): concurrency 16 >= 1.5x the sequential loop and >= 90% of the best
fixed batch.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from e2e_overhead import Server, http_call, http_throughput

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"sd15-arch": 512, "sdxl-arch": 1024, "tiny-sd": 256}


def build(name: str, device: str, dtype, out: Path):
    """Build the random-weight pipeline on `device` and save it for the server."""
    import inspect

    from pixgate.backends.diffusers.builtin import BUILDERS

    builder = BUILDERS[name]
    params = inspect.signature(builder).parameters
    if "device" in params and "dtype" in params:
        pipe = builder(device=device, dtype=dtype)
    else:
        pipe = builder().to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(out)
    return pipe


def images_per_second(pipe, size: int, steps: int, batch: int, total: int) -> float:
    """Run `total` images in calls of `batch` (each image its own seed)."""
    import torch

    done, start = 0, time.perf_counter()
    while done < total:
        b = min(batch, total - done)
        with torch.inference_mode():
            pipe(
                prompt=[f"a lighthouse, variation {done + i}" for i in range(b)],
                width=size,
                height=size,
                num_inference_steps=steps,
                guidance_scale=7.0,
                generator=[
                    torch.Generator(pipe.device.type).manual_seed(done + i) for i in range(b)
                ],
            )
        done += b
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    return total / (time.perf_counter() - start)


def write_config(path: Path, model_dir: Path, name: str, size: int, args) -> None:
    path.write_text(
        f"""
run_workers = true
billing_enabled = false
max_queue = 256
generation_timeout_seconds = 3600
preload = true

[[models]]
name = "{name}"
source = "{model_dir}"
sizes = ["{size}x{size}"]
default_size = "{size}x{size}"
max_steps = {max(args.steps, 50)}
max_batch = {args.max_batch}
dtype = "{args.dtype}"
device = "{args.device}"
"""
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sd15-arch", choices=sorted(SIZES))
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--images", type=int, default=48, help="images per measurement")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--batches", default="1,2,4,8,16")
    parser.add_argument("--max-batch", type=int, default=16, help="pixgate's max_batch")
    parser.add_argument("--smoke", action="store_true", help="tiny-sd on CPU, few images")
    args = parser.parse_args()
    import torch

    if args.smoke:
        args.model, args.steps, args.images = "tiny-sd", 2, 8
        args.concurrency, args.batches, args.max_batch = "1,4", "1,4", 4
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.dtype = "float16" if args.device == "cuda" else "float32"
    if args.device == "cpu" and not args.smoke:
        sys.exit("no GPU here: run on a GPU machine, or pass --smoke to check the script")
    size = SIZES[args.model]
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="pixgate-gpu-bench-") as tmp:
        model_dir = Path(tmp) / args.model
        pipe = build(args.model, args.device, getattr(torch, args.dtype), model_dir)
        images_per_second(pipe, size, args.steps, 2, 2)  # warm-up (kernels, cudnn autotune)
        sequential = images_per_second(pipe, size, args.steps, 1, args.images)
        rows.append(("diffusers sequential loop", sequential))
        best = 0.0
        for b in (int(x) for x in args.batches.split(",")):
            ips = images_per_second(pipe, size, args.steps, b, args.images)
            rows.append((f"diffusers fixed batch {b}", ips))
            best = max(best, ips)
        del pipe
        if args.device == "cuda":
            torch.cuda.empty_cache()

        config = Path(tmp) / "pixgate.toml"
        write_config(config, model_dir, args.model, size, args)
        server = Server(Path(tmp) / "models", Path(tmp) / "data", config)
        try:
            with server.client() as c:
                for i in range(2):
                    http_call(c, size, args.steps, i, args.model)
            results = {}
            for conc in (int(x) for x in args.concurrency.split(",")):
                ips = http_throughput(server, size, args.steps, args.images, conc, args.model)
                results[conc] = ips
                rows.append((f"pixgate concurrency {conc}", ips))
        finally:
            server.stop()

    print(f"{args.model} {size}x{size}, {args.steps} steps, {args.device} {args.dtype}")
    print(f"{'':<28} {'images/s':>9} {'vs seq':>7} {'vs best':>8}")
    for label, ips in rows:
        print(f"{label:<28} {ips:9.3f} {ips / sequential:7.2f} {ips / best:8.2f}")
    top = max(results)
    print(
        f"concurrency {top}: {results[top] / sequential:.2f}x sequential (target >= 1.5), "
        f"{100 * results[top] / best:.0f}% of best fixed batch (target >= 90%)"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
