"""End-to-end HTTP cost of pixgate against a direct diffusers call, in the same run.

Both sides run the same pipeline (builtin tiny-sd loaded from disk through diffusers), the
same size, steps and seeds. pixgate runs as a real `pixgate serve` subprocess with SQLite
and its in-process worker; requests go over loopback HTTP with httpx.

    .venv/bin/python bench/e2e_overhead.py            # defaults: 512x512, 4 steps
    .venv/bin/python bench/e2e_overhead.py --rounds 5 --requests 8

Reports, as ratios against the direct loop measured in this run:
- concurrency 1: median latency of one HTTP request vs one direct pipeline call;
- concurrency 8: images/s with 8 concurrent HTTP clients vs a sequential direct loop.
The direct call is also reported with PNG encoding added, since pixgate returns files.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Direct:
    """The baseline: the same diffusers pipeline called in this process."""

    def __init__(self, models_dir: Path, size: int, steps: int):
        import torch
        from diffusers import DiffusionPipeline

        from pixgate.backends.diffusers.builtin import ensure_builtin

        self.torch = torch
        path = ensure_builtin("tiny-sd", models_dir)
        self.pipe = DiffusionPipeline.from_pretrained(path, dtype=torch.float32)
        self.pipe.set_progress_bar_config(disable=True)
        self.size, self.steps = size, steps

    def call(self, seed: int, encode: bool = False) -> float:
        start = time.perf_counter()
        with self.torch.inference_mode():
            image = self.pipe(
                prompt="a lighthouse on a cliff",
                width=self.size,
                height=self.size,
                num_inference_steps=self.steps,
                guidance_scale=7.5,
                generator=[self.torch.Generator().manual_seed(seed)],
            ).images[0]
        if encode:
            image.save(io.BytesIO(), "PNG", compress_level=1)
        return time.perf_counter() - start


class Server:
    """A real `pixgate serve` subprocess with a fresh data dir."""

    def __init__(self, models_dir: Path, data_dir: Path, config: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PIXGATE_DATA_DIR": str(data_dir),
            "PIXGATE_MODELS_PATH": str(models_dir),
            "PIXGATE_LOG_LEVEL": "WARNING",
            "HF_HUB_OFFLINE": "1",
            **({"PIXGATE_CONFIG": str(config)} if config else {}),
        }
        pixgate = [sys.executable, "-m", "pixgate"]
        created = subprocess.run(
            [*pixgate, "keys", "create", "--plan", "paid", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        self.key = json.loads(created.stdout)["key"]
        self.proc = subprocess.Popen(
            [*pixgate, "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("pixgate did not become ready")

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=300, headers={"Authorization": f"Bearer {self.key}"}
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def http_call(
    client: httpx.Client, size: int, steps: int, seed: int, model: str = "tiny-sd"
) -> float:
    start = time.perf_counter()
    r = client.post(
        "/v1/images/generations",
        json={
            "model": model,
            "prompt": "a lighthouse on a cliff",
            "size": f"{size}x{size}",
            "num_inference_steps": steps,
            "seed": seed,
        },
    )
    elapsed = time.perf_counter() - start
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text}")
    return elapsed


def http_throughput(
    server: Server, size: int, steps: int, total: int, concurrency: int, model: str = "tiny-sd"
) -> float:
    """Images per second with `concurrency` clients sharing `total` requests."""
    counter = iter(range(total))
    lock = threading.Lock()
    errors: list[Exception] = []

    def client_loop() -> None:
        with server.client() as c:
            while True:
                with lock:
                    seed = next(counter, None)
                if seed is None:
                    return
                try:
                    http_call(c, size, steps, seed, model)
                except Exception as exc:
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=client_loop) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6, help="alternating measurement rounds")
    parser.add_argument("--requests", type=int, default=5, help="latency samples per round")
    parser.add_argument("--throughput-images", type=int, default=16, help="images per round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pixgate-bench-") as tmp:
        models_dir = Path(tmp) / "models"
        direct = Direct(models_dir, args.size, args.steps)
        server = Server(models_dir, Path(tmp) / "data")
        try:
            with server.client() as c:
                for i in range(3):  # warm both sides
                    direct.call(i)
                    http_call(c, args.size, args.steps, i)
                lat_direct, lat_encode, lat_http = [], [], []
                tput_direct, tput_encode, tput_http, tput_ratio = [], [], [], []
                for r in range(args.rounds):
                    # Alternate sides so drift on a shared machine hits both equally.
                    for i in range(args.requests):
                        seed = 1000 * r + i
                        lat_direct.append(direct.call(seed))
                        lat_encode.append(direct.call(seed, encode=True))
                        lat_http.append(http_call(c, args.size, args.steps, seed))
                    start = time.perf_counter()
                    for i in range(args.throughput_images):
                        direct.call(i)
                    tput_direct.append(args.throughput_images / (time.perf_counter() - start))
                    start = time.perf_counter()
                    for i in range(args.throughput_images):
                        direct.call(i, encode=True)
                    tput_encode.append(args.throughput_images / (time.perf_counter() - start))
                    tput_http.append(
                        http_throughput(
                            server, args.size, args.steps, args.throughput_images, args.concurrency
                        )
                    )
                    # Pair each pixgate block with the direct block just before it: the
                    # machine's speed drifts between rounds, rarely within one.
                    tput_ratio.append(tput_http[-1] / tput_direct[-1])
                    print(
                        f"round {r + 1}: direct {tput_direct[-1]:.2f} img/s, pixgate "
                        f"{tput_http[-1]:.2f} img/s, ratio {tput_ratio[-1]:.3f}",
                        file=sys.stderr,
                    )
        finally:
            server.stop()

    med = statistics.median
    results = {
        "size": args.size,
        "steps": args.steps,
        "direct_latency_s": med(lat_direct),
        "direct_plus_png_latency_s": med(lat_encode),
        "pixgate_latency_s": med(lat_http),
        "latency_overhead_vs_direct": med(lat_http) / med(lat_direct) - 1,
        "latency_overhead_vs_direct_plus_png": med(lat_http) / med(lat_encode) - 1,
        "direct_images_per_s": med(tput_direct),
        "direct_plus_png_images_per_s": med(tput_encode),
        "pixgate_images_per_s_c8": med(tput_http),
        "throughput_ratio_c8": med(tput_ratio),
        "throughput_ratio_c8_vs_direct_plus_png": med(
            [h / e for h, e in zip(tput_http, tput_encode, strict=True)]
        ),
    }
    print(f"tiny-sd {args.size}x{args.size}, {args.steps} steps, {args.rounds} rounds")
    print(f"{'measure':52} {'value':>10}")
    rows = [
        ("direct call, median latency (s)", results["direct_latency_s"]),
        ("direct call + PNG encode, median latency (s)", results["direct_plus_png_latency_s"]),
        ("pixgate HTTP c=1, median latency (s)", results["pixgate_latency_s"]),
        ("added latency vs direct call", results["latency_overhead_vs_direct"]),
        ("added latency vs direct call + PNG", results["latency_overhead_vs_direct_plus_png"]),
        ("direct loop, images/s", results["direct_images_per_s"]),
        ("direct loop + PNG encode, images/s", results["direct_plus_png_images_per_s"]),
        (f"pixgate HTTP c={args.concurrency}, images/s", results["pixgate_images_per_s_c8"]),
        ("throughput ratio pixgate/direct (median of rounds)", results["throughput_ratio_c8"]),
        (
            "throughput ratio pixgate/(direct + PNG)",
            results["throughput_ratio_c8_vs_direct_plus_png"],
        ),
    ]
    for name, value in rows:
        shown = f"{value:+.1%}" if "added" in name else f"{value:.3f}"
        print(f"{name:52} {shown:>10}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
