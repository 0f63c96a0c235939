"""Relayed models end to end, the operator's side: channel credentials never leave the
server (API answers, errors, metrics, logs, the records), bad `[[channels]]` configs fail
to load with a message naming the entry and field but not the credentials (`pixgate
serve` exits 2 with it), and `pixgate channels list|test|disable`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from pixgate.db import ChannelAttempt, ChannelState, Database, Job
from pixgate.settings import ConfigError, load_settings
from tests.relay_servers import fixtures, generate, relayed, until
from tests.test_tasks import TASKS

upstreams, module_upstreams = fixtures()

PIXGATE = [sys.executable, "-m", "pixgate"]
OPENAI_KEY = "sk-relay-SECRET-openai-4f9c2a77e1"
SF_KEY = "sk-relay-SECRET-siliconflow-0b3d5e"
ACCESS_KEY = "AKRELAYSECRETVOLC8812"
SECRET_KEY = "relay-SECRET-volc-sk-61c0ffee93"
SECRETS = (OPENAI_KEY, SF_KEY, ACCESS_KEY, SECRET_KEY)


def no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} contains a channel credential"
    assert "SECRET" not in text, f"{where} contains part of a channel credential"


# --- secrets -------------------------------------------------------------------------------
def test_channel_credentials_appear_nowhere(make_server, upstreams, capsys):
    oa = upstreams("openai", api_key=OPENAI_KEY)
    sf = upstreams("siliconflow", api_key=SF_KEY)
    volc = upstreams("volcengine", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    wrong = upstreams("openai", api_key="sk-another-key-the-channel-lacks")
    # upstreams echoing the channel's credentials in their errors
    oa.reject_message = f"invalid parameter for key {OPENAI_KEY}"
    sf.reject_message = f"invalid parameter for key {SF_KEY}"
    volc.reject_message = f"invalid parameter for {ACCESS_KEY} signed by {SECRET_KEY}"
    server = make_server(
        channels=[
            oa.channel("oa"),
            sf.channel("sf"),
            volc.channel("volc"),
            wrong.channel("wrong", api_key=OPENAI_KEY),
        ],
        models=[
            relayed("m-oa", "oa"),
            relayed("m-sf", "sf"),
            relayed("m-volc", "volc"),
            relayed("m-wrong", "wrong"),
        ],
        demo=False,
        log_level="DEBUG",
        shutdown_grace_seconds=1,
    )
    key = server.create_key(credit="10")
    admin = server.create_key(role="admin")
    bodies: list[tuple[str, str]] = []
    with server.client(key) as c:
        for model in ("m-oa", "m-sf", "m-volc"):
            ok = generate(c, model)
            assert ok.status_code == 200, ok.text
            bodies.append((f"{model} ok", ok.text))
        for fake in (oa, sf, volc):
            fake.set("reject")
        for model in ("m-oa", "m-sf", "m-volc"):
            r = generate(c, model)
            assert r.status_code == 400 and "invalid parameter for" in r.text, r.text
            bodies.append((f"{model} refused", r.text))
        r = generate(c, "m-wrong")  # 401: the channel is disabled, its reason recorded
        assert r.status_code == 502, r.text
        bodies.append(("401", r.text))
        task = generate(c, "m-oa", **{"async": True}).json()
        done = until(
            lambda: (t := c.get(f"{TASKS}/{task['id']}").json())["status"] == "failed" and t,
            what="the task",
        )
        bodies.append(("failed task", json.dumps(done)))
        bodies.append(("/v1/models", c.get("/v1/models").text))
        bodies.append(("/v1/models/m-oa", c.get("/v1/models/m-oa").text))
        bodies.append(("/metrics", c.get("/metrics").text))
    with server.client(admin) as ac:
        until(lambda: ac.get("/admin/channels/wrong").json()["disabled"], what="disabled")
        bodies.append(("/admin/channels", ac.get("/admin/channels").text))
        for name in ("oa", "sf", "volc", "wrong"):
            bodies.append((f"/admin/channels/{name}", ac.get(f"/admin/channels/{name}").text))
            tested = ac.post(f"/admin/channels/{name}/test")
            bodies.append((f"test {name}", tested.text))
        assert not json.loads(bodies[-1][1])["ok"]
        bodies.append(("/admin/jobs", ac.get("/admin/jobs").text))
        bodies.append(("/openapi.json", ac.get("/openapi.json").text))
    for where, text in bodies:
        no_secret(text, where)

    async def records():
        db = Database(server.settings.db_url)
        try:
            async with db.read() as s:
                rows = [
                    *(await s.scalars(select(ChannelAttempt))).all(),
                    *(await s.scalars(select(ChannelState))).all(),
                    *(await s.scalars(select(Job))).all(),
                ]
        finally:
            await db.dispose()
        return [json.dumps({k: str(v) for k, v in vars(r).items()}) for r in rows]

    attempts = asyncio.run(records())
    assert any("invalid parameter for" in row for row in attempts)  # recorded, blanked
    for row in attempts:
        no_secret(row, "a channel_attempts, channel_states or jobs row")
    server.stop()
    logs = capsys.readouterr()
    assert '"upstream call failed"' in logs.err  # the failures were logged
    no_secret(logs.out + logs.err, "the server's logs")


def test_credentials_from_the_environment(make_server, upstreams, monkeypatch):
    up = upstreams("openai", api_key=OPENAI_KEY)
    monkeypatch.setenv("PIXGATE_TEST_RELAY_KEY", OPENAI_KEY)
    channel = {"name": "env", "type": "openai", "base_url": up.url}
    server = make_server(
        channels=[{**channel, "api_key_env": "PIXGATE_TEST_RELAY_KEY"}],
        models=[relayed("m", "env")],
        demo=False,
    )
    key = server.create_key(credit="5")
    with server.client(key) as c:
        assert generate(c, "m").status_code == 200
    assert up.calls[0].authorized
    monkeypatch.delenv("PIXGATE_TEST_RELAY_KEY")
    with pytest.raises(ConfigError) as caught:
        load_settings(None, channels=[{**channel, "api_key_env": "PIXGATE_TEST_RELAY_KEY"}])
    assert "[[channels]] #1 (env)" in str(caught.value)
    assert "PIXGATE_TEST_RELAY_KEY" in str(caught.value)


# --- config errors -------------------------------------------------------------------------
def channel_entry(**fields) -> dict:
    return {
        "name": "up",
        "type": "openai",
        "base_url": "https://api.example.com/v1",
        "api_key": OPENAI_KEY,
        **fields,
    }


@pytest.mark.parametrize(
    ("channel", "model", "words"),
    [
        ({}, {"channels": ["nope"]}, ["[[models]] #1 (m)", "channels", "'nope'", "up"]),
        ({"type": "midjourney"}, {}, ["[[channels]] #1 (up): type", "openai"]),
        ({"priority": 5000}, {}, ["[[channels]] #1 (up): priority", "1000"]),
        ({"api_key": None}, {}, ["[[channels]] #1 (up)", "needs api_key"]),
        (
            {"type": "volcengine", "access_key": ACCESS_KEY},
            {},
            ["[[channels]] #1 (up)", "secret_key"],
        ),
        ({"base_url": "ftp://h"}, {}, ["[[channels]] #1 (up): base_url", "http"]),
    ],
)
def test_bad_channel_configs_name_the_entry_and_field_not_the_key(tmp_path, channel, model, words):
    entry = {k: v for k, v in channel_entry(**channel).items() if v is not None}
    models = [{**relayed("m", "up"), **model}]
    with pytest.raises(ConfigError) as caught:
        load_settings(None, data_dir=tmp_path, channels=[entry], models=models)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    no_secret(message, "the config error")


def test_relayed_models_load_from_their_own_dump(tmp_path):
    """Settings written out (model_dump) load again: a model with several channels
    keeps `source` and `channels` consistent."""
    settings = load_settings(
        None,
        data_dir=tmp_path,
        channels=[channel_entry(name="a"), channel_entry(name="b")],
        models=[relayed("one", "a"), relayed("two", "a", "b")],
    )
    dumped = settings.model_dump()
    again = load_settings(None, channels=settings.channels, models=dumped["models"])
    assert [m.channels for m in again.models] == [["a"], ["a", "b"]]


def toml(value) -> str:
    if isinstance(value, dict):
        return "\n".join(f"{k} = {toml(v)}" for k, v in value.items())
    return json.dumps(value)  # TOML strings, numbers and arrays of them


def write_config(path: Path, channels: list[dict], models: list[dict], **top) -> Path:
    parts = [toml(top)] if top else []
    parts += [f"[[channels]]\n{toml(c)}" for c in channels]
    parts += [f"[[models]]\n{toml(m)}" for m in models]
    path.write_text("\n\n".join(parts) + "\n")
    return path


def cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250", "PIXGATE_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([*PIXGATE, *args], capture_output=True, text=True, timeout=120, env=env)


def test_serve_with_a_bad_config_exits_2_with_the_message(tmp_path):
    bad = write_config(
        tmp_path / "bad.toml", [channel_entry(type="midjourney")], [relayed("m", "up")]
    )
    result = cli("serve", "--config", str(bad), tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "[[channels]] #1 (up): type" in result.stderr, result.stderr
    no_secret(result.stdout + result.stderr, "serve's output")


# --- pixgate channels ----------------------------------------------------------------------
@pytest.mark.slow
def test_channels_cli_lists_tests_and_disables(tmp_path, module_upstreams):
    good = module_upstreams("openai", api_key=OPENAI_KEY)
    bad = module_upstreams("siliconflow", api_key=SF_KEY)
    bad.set("fail")
    config = write_config(
        tmp_path / "pixgate.toml",
        [
            {"name": "good", "type": "openai", "base_url": good.url, "api_key": OPENAI_KEY},
            {"name": "bad", "type": "siliconflow", "base_url": bad.url, "api_key": SF_KEY},
        ],
        [relayed("m", "good", "bad")],
        demo=False,
    )
    run = lambda *args: cli("channels", *args, "--config", str(config), tmp_path=tmp_path)  # noqa: E731

    listed = run("list")
    assert listed.returncode == 0, listed.stderr
    for word in ("good", "bad", "openai", "siliconflow", "closed"):
        assert word in listed.stdout, listed.stdout
    no_secret(listed.stdout + listed.stderr, "channels list")

    ok = run("test", "good")
    assert ok.returncode == 0, ok.stderr
    assert "ok: good (m) made 1 image(s) in" in ok.stdout and " ms" in ok.stdout, ok.stdout
    assert len(good.calls) == 1 and good.calls[0].authorized

    failed = run("test", "bad")
    assert failed.returncode == 1, failed.stdout
    assert "FAILED bad (m)" in failed.stderr and "HTTP 500" in failed.stderr, failed.stderr
    assert len(bad.calls) == 1
    no_secret(ok.stdout + ok.stderr + failed.stdout + failed.stderr, "channels test")

    assert "good: disabled" in run("disable", "good").stdout
    listed = run("list")
    assert "disabled" in listed.stdout and "good" in listed.stdout, listed.stdout
