"""The `pixgate` command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import free_port

PIXGATE = [sys.executable, "-m", "pixgate"]


def cli(
    *args: str, env: dict | None = None, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*PIXGATE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=cwd,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
def test_keys_create_list_revoke(tmp_path):
    data = ["--data-dir", str(tmp_path)]
    made = json.loads(
        cli(
            "keys",
            "create",
            *data,
            "--json",
            "--name",
            "shop",
            "--images",
            "30",
            "--prefix",
            "yc-pic-",
        ).stdout
    )
    assert made["key"].startswith("yc-pic-") and made["image_cap"] == 30
    listed = cli("keys", "list", *data).stdout
    assert made["id"] in listed and made["key"] not in listed and "shop" in listed
    assert "yc-pic-" in listed
    assert "revoked" in cli("keys", "revoke", made["id"], *data).stdout
    assert "revoked" in cli("keys", "list", *data).stdout
    missing = cli("keys", "revoke", "nope", *data, check=False)
    assert missing.returncode == 1 and "no key matches" in missing.stderr
    bad = cli("keys", "create", *data, "--prefix", "1bad prefix", check=False)
    assert bad.returncode == 2 and "prefix" in bad.stderr


@pytest.mark.slow
def test_generate_writes_an_image(tmp_path, models_dir):
    out = tmp_path / "out.png"
    env = {"PIXGATE_MODELS_PATH": str(models_dir)}
    result = cli(
        "generate",
        "a cat",
        "-o",
        str(out),
        "--data-dir",
        str(tmp_path),
        "--model",
        "tiny-sd",
        "--size",
        "256x256",
        "--steps",
        "2",
        "--seed",
        "4",
        env=env,
    )
    assert "seed 4" in result.stdout
    assert Image.open(out).size == (256, 256)
    bad = cli(
        "generate",
        "x",
        "-o",
        str(out),
        "--data-dir",
        str(tmp_path),
        "--size",
        "7x7",
        env=env,
        check=False,
    )
    assert bad.returncode == 2 and "--size" in bad.stderr


def test_models_list_and_config_file(tmp_path, models_dir):
    config = tmp_path / "pixgate.toml"
    config.write_text(f"""
data_dir = "{tmp_path / "data"}"
models_path = "{models_dir}"
url_ttl_seconds = 600

[[models]]
name = "house-style"
source = "builtin:tiny-sd"
price = 0.2
sizes = ["256x256", "512x512"]
default_size = "256x256"
max_steps = 8
max_images = 2
""")
    listed = cli("models", "list", "--config", str(config)).stdout
    assert "house-style" in listed and "0.2" in listed and "FLUX" not in listed
    broken = tmp_path / "broken.toml"
    broken.write_text('[[models]]\nname = "x"\nsource = "builtin:tiny-sd"\nsizes = ["13x13"]\n')
    bad = cli("models", "list", "--config", str(broken), check=False)
    assert bad.returncode == 2 and "multiples of 8" in bad.stderr
    missing = cli("models", "list", "--config", str(tmp_path / "nope.toml"), check=False)
    assert missing.returncode == 2 and "not found" in missing.stderr


@pytest.mark.slow
def test_serve_with_config_then_sigterm(tmp_path, models_dir):
    """`pixgate serve` as users run it: config file, a key from the CLI, a request, and a
    clean stop on SIGTERM."""
    port = free_port()
    config = tmp_path / "pixgate.toml"
    config.write_text(f"""
data_dir = "{tmp_path / "data"}"
models_path = "{models_dir}"
[[models]]
name = "house-style"
source = "builtin:tiny-sd"
sizes = ["256x256"]
default_size = "256x256"
max_steps = 8
""")
    key = json.loads(cli("keys", "create", "--config", str(config), "--json").stdout)["key"]
    proc = subprocess.Popen(
        [*PIXGATE, "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        r = httpx.post(
            url + "/v1/images/generations",
            timeout=120,
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "house-style", "prompt": "x", "num_inference_steps": 9},
        )
        assert r.status_code == 400 and "between 1 and 8" in r.json()["error"]["message"]
        r = httpx.post(
            url + "/v1/images/generations",
            timeout=120,
            headers={"Authorization": f"Bearer {key}"},
            json={"prompt": "x", "num_inference_steps": 2},
        )
        assert r.status_code == 200, r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "worker stopped" in err
    assert key not in err


def _wait_ready(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server not ready")


@pytest.mark.slow
def test_api_node_and_separate_worker_process(tmp_path, models_dir):
    """The scaled shape on one machine: `serve --no-workers` takes requests, a separate
    `pixgate worker` process claims and runs them through the shared database."""
    port = free_port()
    env = {
        **os.environ,
        "PIXGATE_DATA_DIR": str(tmp_path / "data"),
        "PIXGATE_MODELS_PATH": str(models_dir),
        "PIXGATE_DEMO": "true",
        "PIXGATE_PRELOAD": "false",  # load tiny-sd at the job, not all the demo's builds first
    }
    key = json.loads(cli("keys", "create", "--json", "--images", "2", env=env).stdout)["key"]
    api = subprocess.Popen(
        [*PIXGATE, "serve", "--no-workers", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker = None
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, api)
        assert "worker" not in httpx.get(url + "/readyz").json()["checks"]
        worker = subprocess.Popen(
            [*PIXGATE, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        r = httpx.post(
            url + "/v1/images/generations",
            timeout=120,
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": "tiny-sd",
                "prompt": "x",
                "size": "256x256",
                "num_inference_steps": 2,
                "n": 2,
            },
        )
        assert r.status_code == 200, r.text
        assert httpx.get(r.json()["data"][1]["url"]).status_code == 200
    finally:
        for proc in (worker, api):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=60)
    assert worker.returncode == 0


@pytest.mark.slow
def test_users_credit_codes_ledger_audit(tmp_path):
    data = ["--data-dir", str(tmp_path)]
    user = json.loads(cli("users", "create", "alice", "--plan", "paid", "--json", *data).stdout)
    assert user["plan"] == "paid"
    dup = cli("users", "create", "alice", *data, check=False)
    assert dup.returncode == 2 and "already exists" in dup.stderr
    assert (
        "balance 12.5"
        in cli("credit", "grant", "alice", "12.5", "--reason", "welcome", *data).stdout
    )
    neg = cli(
        "credit",
        "grant",
        "--kind",
        "adjust",
        "--reason",
        "x",
        *data,
        "--",
        "alice",
        "-100",
        check=False,
    )
    assert neg.returncode == 2 and "below zero" in neg.stderr
    made = json.loads(
        cli(
            "keys", "create", "--user", "alice", "--images", "3", "--secret", "--json", *data
        ).stdout
    )
    assert made["user_id"] == user["id"] and made["signing_secret"]
    codes = json.loads(
        cli("codes", "mint", "--count", "2", "--value", "1.5", "--json", *data).stdout
    )["codes"]
    assert len(codes) == 2 and all(c.startswith("PG-") for c in codes)
    listed = cli("users", "list", *data).stdout
    assert "alice" in listed and "12.5" in listed
    assert "welcome" in cli("ledger", "--user", "alice", *data).stdout
    assert "status" in cli("jobs", "--user", "alice", *data).stdout
    assert "audit clean" in cli("audit", *data).stdout

    # Money moved behind the ledger's back is caught, with a non-zero exit.
    import sqlite3

    con = sqlite3.connect(tmp_path / "pixgate.db")
    con.execute("UPDATE users SET balance_minor = balance_minor + 1 WHERE name = 'alice'")
    con.commit()
    con.close()
    bad = cli("audit", *data, check=False)
    assert bad.returncode == 1 and "alice" in bad.stderr and "ledger sum" in bad.stderr


def test_generate_without_weights_says_what_to_do_in_one_line(tmp_path):
    """No --demo: the default model (FLUX.1-schnell) has hub weights this machine lacks. The
    answer is one line naming the model and the fix, before any progress bar or torch."""
    started = time.monotonic()
    result = cli(
        "generate", "a cat", "-o", str(tmp_path / "x.png"), "--data-dir", str(tmp_path), check=False
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "/20" not in result.stderr
    error = [line for line in lines if line.startswith("error:")]
    assert len(error) == 1, result.stderr
    assert "FLUX.1-schnell" in error[0] and "pixgate models pull FLUX.1-schnell" in error[0]
    assert "--demo" in error[0]
    assert not (tmp_path / "x.png").exists()
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_data_dir_is_the_same_from_any_folder(tmp_path):
    """Without --data-dir or PIXGATE_DATA_DIR every folder opens the per-user data dir (and
    says so), except a folder holding ./pixgate-data, which uses that one."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("PIXGATE_DATA_DIR", "XDG_DATA_HOME")}
    env.update(HOME=str(home), COLUMNS="200")

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        cwd.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [*PIXGATE, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd
        )
        assert result.returncode == 0, result.stderr
        return result

    made = run("keys", "create", "--json", cwd=tmp_path / "a")
    user_dir = home / ".local" / "share" / "pixgate"
    assert f"data dir: {user_dir}" in made.stderr
    key_id = json.loads(made.stdout)["id"]
    listed = run("keys", "list", "--json", cwd=tmp_path / "b" / "c")
    assert [k["id"] for k in json.loads(listed.stdout)] == [key_id]
    assert f"data dir: {user_dir}" in listed.stderr

    local = tmp_path / "project" / "pixgate-data"
    local.mkdir(parents=True)
    here = run("keys", "list", "--json", cwd=tmp_path / "project")
    assert json.loads(here.stdout) == [] and f"data dir: {local}" in here.stderr
    env["PIXGATE_DATA_DIR"] = str(user_dir)
    assert json.loads(run("keys", "list", "--json", cwd=tmp_path / "project").stdout)[0]["id"] == (
        key_id
    )


def test_models_list_says_which_catalog(tmp_path):
    data = ["--data-dir", str(tmp_path)]
    default = cli("models", "list", *data).stdout
    assert "catalog: defaults with hub weights" in default
    assert "black-forest-labs/FLUX.1-schnell" in default and "Yuecheng-VisGen" not in default
    demo = cli("models", "list", "--demo", *data).stdout
    assert "catalog: demo mode" in demo and "Yuecheng-VisGen/VisGen" in demo
    assert "black-forest-labs" not in demo
    assert "catalog: demo mode" in cli("models", "list", *data, env={"PIXGATE_DEMO": "1"}).stdout


@pytest.mark.slow
def test_free_grant_in_demo_mode_and_from_settings(tmp_path):
    """The demo default model is free, so the grant is priced at the cheapest priced model
    (30 x 0.2 CNY); `free_grant` sets it in currency; with nothing priced it is 0."""
    data = ["--data-dir", str(tmp_path), "--json"]

    def balance(name: str, **env: str) -> str:
        return json.loads(cli("users", "create", name, *data, env=env).stdout)["balance"]

    assert balance("demo", PIXGATE_DEMO="true") == "6"
    assert balance("set", PIXGATE_DEMO="true", PIXGATE_FREE_GRANT="2.5") == "2.5"
    assert balance("nothing-priced", PIXGATE_DEMO="false") == "0"
    bad = cli("users", "create", "x", *data, env={"PIXGATE_FREE_GRANT": "-1"}, check=False)
    assert bad.returncode == 2 and "free_grant" in bad.stderr


def test_commands_that_run_models_name_the_engine_extra_when_it_is_missing(tmp_path):
    """On an API-only install (no torch, no diffusers) `serve` with workers and `generate`
    stop at once with one line naming `pixgate[engine]`; `serve --no-workers` is the way."""
    hide_engine = (
        "import importlib.util, sys; real = importlib.util.find_spec; "
        "importlib.util.find_spec = lambda name, *a: "
        "None if name in ('torch', 'diffusers') else real(name, *a); "
        "from pixgate.cli import main; sys.argv[0] = 'pixgate'; main()"
    )
    data = ["--data-dir", str(tmp_path)]
    for args in (
        ["serve", "--port", str(free_port()), *data],
        ["generate", "x", "-o", str(tmp_path / "x.png"), "--model", "tiny-sd", *data],
    ):
        result = subprocess.run(
            [sys.executable, "-c", hide_engine, *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 1, result.stderr
        assert "pip install 'pixgate[engine]'" in result.stderr and "Traceback" not in result.stderr
        assert ("--no-workers" in result.stderr) == (args[0] == "serve")
