"""Relay throughput: pixgate against LiteLLM's proxy and a bare forwarder, same run.

All three relay `POST /v1/images/generations` to ONE fake upstream on loopback that answers
at once with a 64x64 PNG as `b64_json` (bench/relay_apps.py, under uvicorn):

- pixgate: a real `pixgate serve` subprocess (SQLite, in-process worker) with one `openai`
  channel to the fake and a priced model, called with a paid key that has credit: auth, rate
  limit, reserve, job, relay, re-host, settle on every request;
- LiteLLM's proxy (`litellm --config`, model `openai/dall-e-2` on the fake, master key), from
  a separate venv that this script creates with `pip install 'litellm[proxy]'` unless it
  exists (`--litellm-venv`);
- a bare Starlette forwarder under uvicorn: one shared httpx.AsyncClient, no checks (the
  floor).

    .venv/bin/python bench/relay.py                       # 10 s per point, c = 1, 16, 64
    .venv/bin/python bench/relay.py --wait-quiet 300 --markdown   # as in docs/benchmarks.md
    .venv/bin/python bench/relay.py --seconds 5 --litellm-venv /tmp/litellm-venv

Before measuring, one request to each target must answer 200 with a decodable image (PIL).
Load comes from this process: `c` async httpx clients, each with its own kept-alive
connection, each sending its next request when the last one is answered. For each level
every target is measured in turn (warm-up, then `--seconds`), so drift on the machine hits
all of them. Reports, per target and level: requests/s (200s with an image), p50/p99
latency, errors (anything else), the relay's CPU time per request, and the CPU used by the
fake upstream, by the clients and by everything else on the machine (a warning when other
work ran meanwhile); then pixgate/LiteLLM and pixgate/bare throughput and the p99s against
the targets. Afterwards `pixgate audit` must be clean and the credit spent must equal the
price times the images pixgate answered. Every server runs with uvicorn's defaults apart
from the log level (warning).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import datetime
import io
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DEFAULT_LITELLM_VENV = BENCH / ".venvs" / "litellm"
PATH = "/v1/images/generations"
BODY = json.dumps({"model": "relay-model", "prompt": "x", "response_format": "b64_json"}).encode()
TARGETS = ("pixgate", "litellm", "bare")
CLK_TCK = os.sysconf("SC_CLK_TCK")
ANSWERED: collections.Counter[int] = collections.Counter()  # 200s with an image, by port
PRICE = Decimal("0.01")  # the model's price in the pixgate config below
FOREIGN_WARN = 0.15  # cores used by processes outside this benchmark before it warns

PIXGATE_TOML = """\
log_level = "WARNING"

[[channels]]
name = "fake"
type = "openai"
base_url = "{upstream}"
api_key = "sk-fake"
upstream_price = "0.01"

[[models]]
name = "relay-model"
channels = ["fake"]
sizes = ["256x256"]
default_size = "256x256"
price = "0.01"

[plans.free]
[plans.paid]
"""

LITELLM_YAML = """\
model_list:
  - model_name: relay-model
    litellm_params:
      model: openai/dall-e-2
      api_base: {upstream}
      api_key: sk-fake
general_settings:
  master_key: sk-master
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's PIXGATE_* and LITELLM_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIXGATE_", "LITELLM_"))}
    env.pop("VIRTUAL_ENV", None)
    return {**env, **extra}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time spent by every process on the machine so far, in core-seconds."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def wait_quiet(limit: float) -> float:
    """Wait (up to `limit` seconds) for 5 s in which the machine uses under FOREIGN_WARN
    cores; returns the last window's load (2 s sampled when limit is 0)."""
    deadline = time.monotonic() + limit
    while True:
        window = 5.0 if limit else 2.0
        before, start = machine_busy_seconds(), time.monotonic()
        time.sleep(window)
        load = (machine_busy_seconds() - before) / (time.monotonic() - start)
        if load < FOREIGN_WARN or time.monotonic() >= deadline:
            return load
        print(f"machine busy ({load:.2f} cores); waiting for it to be quiet", file=sys.stderr)


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen
    log: Path
    headers: dict[str, str] = field(default_factory=dict)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Processes:
    """Every server this run starts, each in its own session, stopped on any exit."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.servers: list[Server] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str], url: str) -> Server:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=self.logs,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only this script; it stops them
            )
        server = Server(name, url, proc, log)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for server in reversed(self.servers):
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # The group too: a server may have started children of its own.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(timeout=5)
        self.servers.clear()


def wait_ready(server: Server, path: str, timeout: float) -> float:
    """Poll GET `path` until it answers 200; seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
            )
        try:
            if httpx.get(server.url + path, timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s:\n{server.log_tail()}")


def uvicorn_cmd(app: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--app-dir",
        str(BENCH),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def start_fake(procs: Processes) -> Server:
    port = free_port()
    server = procs.start(
        "fake-upstream",
        uvicorn_cmd("relay_apps:fake_upstream", port),
        clean_env(),
        f"http://127.0.0.1:{port}",
    )
    wait_ready(server, "/readyz", 60)
    return server


def start_bare(procs: Processes, upstream: str) -> Server:
    port = free_port()
    server = procs.start(
        "bare",
        uvicorn_cmd("relay_apps:bare_forwarder", port),
        clean_env(RELAY_BENCH_UPSTREAM=upstream),
        f"http://127.0.0.1:{port}",
    )
    wait_ready(server, "/readyz", 60)
    return server


def pixgate_cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pixgate", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"pixgate {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def start_pixgate(procs: Processes, upstream: str, tmp: Path) -> tuple[Server, dict]:
    config = tmp / "relay.toml"
    config.write_text(PIXGATE_TOML.format(upstream=upstream))
    env = clean_env(PIXGATE_DATA_DIR=str(tmp / "pixgate-data"), HF_HUB_OFFLINE="1")
    conf = ["--config", str(config)]
    created = json.loads(pixgate_cli(["keys", "create", *conf, "--plan", "paid", "--json"], env))
    credit = "100000"
    grant = ["credit", "grant", created["user_id"], credit, "--reason", "bench"]
    pixgate_cli([*grant, "--kind", "topup", *conf], env)
    # The balance now (the credit above plus any signup grant of the plan).
    start_balance = table_cell(
        pixgate_cli(["users", "list", *conf], env), created["user_id"], "balance"
    )
    port = free_port()
    server = procs.start(
        "pixgate",
        [sys.executable, "-m", "pixgate", "serve", *conf, "--port", str(port)],
        env,
        f"http://127.0.0.1:{port}",
    )
    server.headers = {"Authorization": f"Bearer {created['key']}"}
    wait_ready(server, "/readyz", 120)
    info = {"env": env, "conf": conf, "user_id": created["user_id"], "start": start_balance}
    return server, info


def ensure_litellm(venv: Path) -> Path:
    """The `litellm` executable in `venv`, installing `litellm[proxy]` there if missing."""
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"installing litellm[proxy] into {venv} (once) ...", file=sys.stderr)
    if not (venv / "bin" / "python").exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Keep the venv out of git (python -m venv does this itself from 3.13 on).
    (venv / ".gitignore").write_text("*\n")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "litellm[proxy]"],
        check=True,
    )
    if not exe.exists():
        raise RuntimeError(f"pip installed litellm[proxy] but {exe} is missing")
    return exe


def litellm_version(venv: Path) -> str:
    done = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or "unknown"


def start_litellm(procs: Processes, exe: Path, upstream: str, tmp: Path) -> Server:
    config = tmp / "litellm.yaml"
    config.write_text(LITELLM_YAML.format(upstream=upstream))
    port = free_port()
    env = clean_env(
        LITELLM_LOG="WARNING",  # its logger and uvicorn's log level, as for the others
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # the bundled cost map: no fetch at startup
    )
    server = procs.start(
        "litellm",
        [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        env,
        f"http://127.0.0.1:{port}",
    )
    server.headers = {"Authorization": "Bearer sk-master"}
    took = wait_ready(server, "/health/liveliness", 300)
    print(f"litellm ready after {took:.0f} s", file=sys.stderr)
    return server


def verify(server: Server) -> str:
    """One request must answer 200 with a decodable image; returns what it was."""
    from PIL import Image

    r = httpx.post(
        server.url + PATH,
        content=BODY,
        headers={**server.headers, "content-type": "application/json"},
        timeout=60,
    )
    if r.status_code != 200:
        raise RuntimeError(f"{server.name}: HTTP {r.status_code}: {r.text[:500]}")
    try:
        item = r.json()["data"][0]
        raw = base64.b64decode(item["b64_json"])
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            ANSWERED[httpx.URL(server.url).port or 0] += 1
            return f"{image.format} {image.size[0]}x{image.size[1]}, {len(r.content)} B answer"
    except Exception as exc:
        raise RuntimeError(
            f"{server.name}: no image in the answer ({exc!r}): {r.text[:500]}"
        ) from exc


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(q / 100 * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def drive(clients: list[httpx.AsyncClient], seconds: float) -> dict:
    """Each client sends one request after another until `seconds` pass (requests in
    flight then are waited for and counted)."""
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()
    deadline = start + seconds

    async def one_client(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                r = await client.post(PATH, content=BODY)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)  # a dead target must not spin this loop
                continue
            elapsed = time.perf_counter() - t0
            if r.status_code != 200:
                errors[f"HTTP {r.status_code}"] += 1
            elif b'"b64_json"' not in r.content:
                errors["200 without b64_json"] += 1
            else:
                latencies.append(elapsed)
                ANSWERED[client.base_url.port or 0] += 1

    await asyncio.gather(*(one_client(c) for c in clients))
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / wall,
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
        "wall_s": wall,
    }


async def measure(
    server: Server, others: list[Server], concurrency: int, seconds: float, warmup: float
) -> dict:
    """Warm up, then measure `server` with `concurrency` clients. Each client is its own
    httpx.AsyncClient with one kept-alive connection: one client with a 64-connection pool
    tops out near 140 req/s on this machine (its pool, not the servers, is the limit)."""
    headers = {**server.headers, "content-type": "application/json"}
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60, limits=one)
            )
            for _ in range(concurrency)
        ]
        await drive(clients, warmup)
        everyone = [server, *others]
        cpu_before = {s.name: cpu_seconds(s.proc.pid) for s in everyone}
        own_before = time.process_time()
        busy_before = machine_busy_seconds()
        result = await drive(clients, seconds)
        busy = machine_busy_seconds() - busy_before
        own = time.process_time() - own_before
        cpu = {s.name: cpu_seconds(s.proc.pid) - cpu_before[s.name] for s in everyone}
    wall = result["wall_s"]
    # What the rest of the machine used meanwhile: a busy machine makes figures meaningless.
    result["foreign_cpu_cores"] = max(0.0, busy - own - sum(cpu.values())) / wall
    result["server_cpu_ms_per_request"] = 1000 * cpu[server.name] / max(1, result["ok"])
    result["server_cpu_cores"] = cpu[server.name] / wall
    result["load_generator_cpu_cores"] = own / wall
    result["other_processes_cpu_cores"] = {
        k: round(v / wall, 3) for k, v in cpu.items() if k != server.name
    }
    return result


def table_cell(text: str, row_key: str, column: str) -> Decimal | None:
    """A number from a rich table printed by the pixgate CLI (None if it is not there)."""
    lines = text.splitlines()
    header = next((line for line in lines if f" {column} " in line), None)
    row = next((line for line in lines if row_key in line), None)
    if header is None or row is None:
        return None
    names = [c.strip() for c in re.split(r"[│┃]", header)]
    cells = [c.strip() for c in re.split(r"[│┃]", row)]
    if column not in names or len(cells) != len(names):
        return None
    with contextlib.suppress(ArithmeticError):
        return Decimal(cells[names.index(column)].replace(",", ""))
    return None


def billing_check(info: dict, server: Server) -> dict:
    """After pixgate stopped: its audit (balances against the ledger, jobs against their
    charges), the credit spent against the images it answered, and its log's warnings."""
    audit = subprocess.run(
        [sys.executable, "-m", "pixgate", "audit", *info["conf"]],
        env=info["env"],
        capture_output=True,
        text=True,
    )
    users = subprocess.run(
        [sys.executable, "-m", "pixgate", "users", "list", *info["conf"]],
        env=info["env"],
        capture_output=True,
        text=True,
    ).stdout
    balance = table_cell(users, info["user_id"], "balance")
    answered = ANSWERED[httpx.URL(server.url).port or 0]
    start = info["start"]
    spent = start - balance if balance is not None and start is not None else None
    warnings: collections.Counter[str] = collections.Counter()
    for line in server.log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            entry = json.loads(line)
            if entry.get("level") in ("warning", "error", "critical"):
                warnings[f"{entry['level']}: {entry.get('event')}"] += 1
    return {
        "audit_rc": audit.returncode,
        "audit_output": (audit.stdout + audit.stderr).strip()[-2000:],
        "images_answered": answered,
        "credit_spent": str(spent) if spent is not None else None,
        "expected_spent": str(PRICE * answered),
        "spent_matches": spent == PRICE * answered if spent is not None else None,
        "log_warnings": dict(warnings),
    }


def git_describe() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def summarize(rows: list[dict], levels: list[int], targets: list[str]) -> tuple[list, list]:
    """Median over rounds per (concurrency, target), then the ratios per level."""
    table = []
    for c in levels:
        for t in targets:
            runs = [r for r in rows if r["concurrency"] == c and r["target"] == t]
            med = {
                k: statistics.median(r[k] for r in runs)
                for k in (
                    "requests_per_s",
                    "p50_ms",
                    "p99_ms",
                    "server_cpu_ms_per_request",
                    "server_cpu_cores",
                    "load_generator_cpu_cores",
                    "foreign_cpu_cores",
                )
            }
            med["upstream_cpu_cores"] = statistics.median(
                r["other_processes_cpu_cores"]["fake-upstream"] for r in runs
            )
            errors = sum(r["errors"] for r in runs)
            kinds: collections.Counter[str] = collections.Counter()
            for r in runs:
                kinds.update(r["error_kinds"])
            table.append(
                {"concurrency": c, "target": t, **med, "errors": errors, "error_kinds": dict(kinds)}
            )
    ratios = []
    for c in levels:
        by = {r["target"]: r for r in table if r["concurrency"] == c}
        if "pixgate" not in by:
            continue
        p = by["pixgate"]
        entry: dict = {"concurrency": c}
        if "litellm" in by:
            lite = by["litellm"]
            entry["pixgate_over_litellm_rps"] = ratio(p["requests_per_s"], lite["requests_per_s"])
            entry["pixgate_over_litellm_p99"] = ratio(p["p99_ms"], lite["p99_ms"])
            entry["target_2x_litellm_rps"] = entry["pixgate_over_litellm_rps"] >= 2
            entry["target_lower_p99"] = p["p99_ms"] < lite["p99_ms"]
        if "bare" in by:
            bare = by["bare"]
            entry["pixgate_over_bare_rps"] = ratio(p["requests_per_s"], bare["requests_per_s"])
            entry["target_third_of_bare"] = entry["pixgate_over_bare_rps"] >= 1 / 3
        ratios.append(entry)
    return table, ratios


def print_report(
    table: list[dict], ratios: list[dict], seconds: float, rounds: int, versions: str
) -> None:
    print(
        f"\nrelay to a fake upstream, {seconds:g} s per point, {rounds} round(s) (medians); "
        + versions
    )
    print(
        f"{'c':>3} {'target':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
        f"{'CPU ms/req':>10} {'CPU: server':>11} {'upstream':>8} {'clients':>7} {'other':>5}"
    )
    for r in table:
        print(
            f"{r['concurrency']:>3} {r['target']:8} {r['requests_per_s']:>9.1f} "
            f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6} "
            f"{r['server_cpu_ms_per_request']:>10.2f} {r['server_cpu_cores']:>11.2f} "
            f"{r['upstream_cpu_cores']:>8.2f} {r['load_generator_cpu_cores']:>7.2f} "
            f"{r['foreign_cpu_cores']:>5.2f}"
        )
    print(
        "(CPU ms/req: the relay's own CPU time per answered request. CPU columns, in cores:"
        " the relay, the fake upstream, this script's clients, everything else on the machine)"
    )
    if busy := [r for r in table if r["foreign_cpu_cores"] > FOREIGN_WARN]:
        worst = max(r["foreign_cpu_cores"] for r in busy)
        print(
            f"WARNING: other work on the machine used up to {worst:.2f} cores during "
            f"{len(busy)} of {len(table)} points; rerun on a quiet machine."
        )
    print()

    def yes(flag: bool | None) -> str:
        return "-" if flag is None else ("met" if flag else "NOT met")

    for e in ratios:
        parts = [f"c={e['concurrency']:<3}"]
        if "pixgate_over_litellm_rps" in e:
            parts.append(
                f"pixgate/LiteLLM {e['pixgate_over_litellm_rps']:.2f}x "
                f"(>= 2x: {yes(e['target_2x_litellm_rps'])}), "
                f"p99 ratio {e['pixgate_over_litellm_p99']:.2f} "
                f"(lower: {yes(e['target_lower_p99'])})"
            )
        if "pixgate_over_bare_rps" in e:
            parts.append(
                f"pixgate/bare {e['pixgate_over_bare_rps']:.2f} "
                f"(>= 1/3: {yes(e['target_third_of_bare'])})"
            )
        print("  ".join(parts))
    for r in table:
        if r["errors"]:
            print(f"errors, {r['target']} c={r['concurrency']}: {r['error_kinds']}")


def markdown(table: list[dict], ratios: list[dict]) -> str:
    """The two tables of docs/benchmarks.md's relay section."""
    lines = [
        "| c | target | req/s | p50 ms | p99 ms | errors | CPU ms/req | relay CPU, cores |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"pixgate": "pixgate", "litellm": "LiteLLM", "bare": "bare forwarder"}
    for r in table:
        lines.append(
            f"| {r['concurrency']} | {names[r['target']]} | {r['requests_per_s']:.1f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} "
            f"| {r['server_cpu_ms_per_request']:.2f} | {r['server_cpu_cores']:.2f} |"
        )
    lines += [
        "",
        "| c | pixgate / LiteLLM, req/s | pixgate / LiteLLM, p99 | pixgate / bare, req/s |",
        "|---|---|---|---|",
    ]
    for e in ratios:
        cells = [
            f"{e[k]:.2f}" if k in e else "-"
            for k in (
                "pixgate_over_litellm_rps",
                "pixgate_over_litellm_p99",
                "pixgate_over_bare_rps",
            )
        ]
        lines.append(f"| {e['concurrency']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def sweep(
    servers: dict[str, Server],
    fake: Server,
    levels: list[int],
    rounds: int,
    seconds: float,
    warmup: float,
) -> list[dict]:
    rows = []
    names = list(servers)
    for name in names:  # a first warm-up of every target before any point is measured
        await measure(servers[name], [], 16, 0, 3 * warmup)
    for rnd in range(rounds):
        for c in levels:
            # Targets interleaved per level; the order rotates so none is always first.
            shift = (rnd * len(levels) + levels.index(c)) % len(names)
            for name in names[shift:] + names[:shift]:
                others = [fake, *(s for n, s in servers.items() if n != name)]
                result = await measure(servers[name], others, c, seconds, warmup)
                rows.append({"round": rnd + 1, "concurrency": c, "target": name, **result})
                print(
                    f"round {rnd + 1} c={c:<3} {name:8} {result['requests_per_s']:8.1f} req/s  "
                    f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                    f"errors {result['errors']}  other {result['foreign_cpu_cores']:.2f} cores",
                    file=sys.stderr,
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per point")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up time per point")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated levels")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the sweep; medians")
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help=f"subset of {','.join(TARGETS)}"
    )
    parser.add_argument(
        "--litellm-venv",
        type=Path,
        default=DEFAULT_LITELLM_VENV,
        help="venv with litellm[proxy]; created (pip install) when it has no litellm",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to this long for the machine to be idle",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="also print the tables for docs/benchmarks.md"
    )
    parser.add_argument(
        "--json", type=Path, default=BENCH / "results" / "relay.json", help="results file"
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown := set(targets) - set(TARGETS):
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    targets = [t for t in TARGETS if t in targets]

    # SIGTERM / SIGHUP end the run like Ctrl-C does, through the cleanup below.
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    litellm_exe = ensure_litellm(args.litellm_venv.resolve()) if "litellm" in targets else None
    idle_load = wait_quiet(args.wait_quiet)
    if idle_load >= FOREIGN_WARN:
        print(
            f"WARNING: the machine is busy before the run ({idle_load:.2f} cores in use)",
            file=sys.stderr,
        )

    with tempfile.TemporaryDirectory(prefix="pixgate-relay-bench-") as tmpdir:
        tmp = Path(tmpdir)
        procs = Processes(tmp)
        pixgate_info = None
        try:
            fake = start_fake(procs)
            upstream = fake.url + "/v1"
            servers: dict[str, Server] = {}
            for name in targets:
                if name == "pixgate":
                    servers[name], pixgate_info = start_pixgate(procs, upstream, tmp)
                elif name == "litellm":
                    assert litellm_exe is not None
                    servers[name] = start_litellm(procs, litellm_exe, upstream, tmp)
                else:
                    servers[name] = start_bare(procs, upstream)
            checks = {name: verify(s) for name, s in servers.items()}
            for name, what in checks.items():
                print(f"{name}: 200 with {what}", file=sys.stderr)
            rows = asyncio.run(sweep(servers, fake, levels, args.rounds, args.seconds, args.warmup))
            pixgate_log = servers["pixgate"].log_tail(20) if "pixgate" in servers else ""
        except KeyboardInterrupt:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
            print("\ninterrupted; stopping the servers", file=sys.stderr)
            sys.exit(130)
        except RuntimeError as exc:  # a server that did not start or answered wrongly
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        finally:
            procs.stop_all()
        billing = billing_check(pixgate_info, servers["pixgate"]) if pixgate_info else None

    table, ratios = summarize(rows, levels, targets)
    pixgate_version = git_describe()
    lite_version = litellm_version(args.litellm_venv.resolve()) if litellm_exe else None
    versions = f"pixgate {pixgate_version}" + (f", LiteLLM {lite_version}" if lite_version else "")
    print_report(table, ratios, args.seconds, args.rounds, versions)
    if args.markdown:
        print("\n" + markdown(table, ratios) + "\n")
    if billing:
        state = "ok" if billing["audit_rc"] == 0 else f"FAILED (rc {billing['audit_rc']})"
        print(f"pixgate audit after the run: {state}")
        if billing["audit_rc"] != 0:
            print(billing["audit_output"])
        print(
            f"pixgate credit spent: {billing['credit_spent']} for {billing['images_answered']} "
            f"images answered ({billing['expected_spent']} expected): "
            + {True: "ok", False: "MISMATCH", None: "balance not found"}[billing["spent_matches"]]
        )
        for what, count in billing["log_warnings"].items():
            print(f"pixgate log: {count} x {what}")

    results = {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "pixgate": pixgate_version,
        "litellm": lite_version,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "levels": levels,
        "machine_load_before_cores": round(idle_load, 3),
        "verified": checks,
        "table": table,
        "ratios": ratios,
        "runs": rows,
        "pixgate_billing": billing,
        "pixgate_log_tail": pixgate_log,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
