"""How fast an API-only node (`pixgate serve --no-workers`) starts and how much memory it
idles in, against a minimal FastAPI app under uvicorn started the same way in the same run.

    .venv/bin/python bench/api_node.py
    .venv/bin/python bench/api_node.py --rounds 5 --markdown

Start: from spawning the process to the first 200 from `/healthz` (the baseline answers
`/healthz` too), on a database that exists (a node joining a deployment); the very first
start, which creates and migrates the database, is reported apart. Idle RSS: resident
memory after start and 20 requests, a second later.
Targets (issue 12): start under 3 s, idle under 150 MB.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BASELINE_APP = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/healthz")
def healthz():
    return {"ok": True}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
START_TARGET_S = 3.0
RSS_TARGET_MB = 150


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(cmd: list[str], port: int, env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{cmd} exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.02)
        started = time.perf_counter() - start
        with httpx.Client() as client:
            for _ in range(20):
                client.get(url)
        time.sleep(1)
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        return started, rss
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "pixgate": []}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PIXGATE_DATA_DIR": f"{tmp}/data", "PIXGATE_DEMO": "true"}

        def pixgate(port: int) -> list[str]:
            return [sys.executable, "-m", "pixgate", "serve", "--no-workers", "--port", str(port)]

        port = _free_port()
        first = _measure(pixgate(port), port, env)  # makes and migrates the database
        for _ in range(args.rounds):
            port = _free_port()
            results["baseline"].append(
                _measure([sys.executable, "-c", BASELINE_APP, str(port)], port, dict(os.environ))
            )
            port = _free_port()
            results["pixgate"].append(_measure(pixgate(port), port, env))
    med = {k: (statistics.median(s for s, _ in v), statistics.median(r for _, r in v))
           for k, v in results.items()}  # fmt: skip
    (b_start, b_rss), (p_start, p_rss) = med["baseline"], med["pixgate"]
    start_ok = "met" if p_start < START_TARGET_S else "missed"
    rss_ok = "met" if p_rss < RSS_TARGET_MB else "missed"
    print(f"median of {args.rounds} starts on an existing database; the first start, which "
          f"made and migrated it, took {first[0]:.2f} s")  # fmt: skip
    if args.markdown:
        print("| | minimal FastAPI | pixgate --no-workers | ratio | target | |")
        print("|---|---:|---:|---:|---:|---|")
        print(f"| start | {b_start:.2f} s | {p_start:.2f} s | {p_start / b_start:.2f} "
              f"| < {START_TARGET_S} s | {start_ok} |")  # fmt: skip
        print(f"| idle RSS | {b_rss:.0f} MB | {p_rss:.0f} MB | {p_rss / b_rss:.2f} "
              f"| < {RSS_TARGET_MB} MB | {rss_ok} |")  # fmt: skip
    else:
        print(f"start     baseline {b_start:.2f} s  pixgate {p_start:.2f} s  "
              f"ratio {p_start / b_start:.2f}  target < {START_TARGET_S} s {start_ok}")  # fmt: skip
        print(f"idle RSS  baseline {b_rss:.0f} MB  pixgate {p_rss:.0f} MB  "
              f"ratio {p_rss / b_rss:.2f}  target < {RSS_TARGET_MB} MB {rss_ok}")  # fmt: skip


if __name__ == "__main__":
    main()
