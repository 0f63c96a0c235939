"""The relay configuration examples of README.md and docs/relay.md load as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pixgate.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
TOML_BLOCK = re.compile(r"```toml\n(.*?)```", re.S)


def relay_examples() -> list[tuple[str, str]]:
    found = []
    for name in ("README.md", "docs/relay.md"):
        for block in TOML_BLOCK.findall((ROOT / name).read_text()):
            if "[[channels]]" in block:
                found.append((name, block))
    return found


@pytest.mark.parametrize(("doc", "block"), relay_examples(), ids=lambda v: str(v)[:20])
def test_relay_config_examples_load(doc, block, tmp_path, monkeypatch):
    for env in re.findall(r'_env = "(\w+)"', block):
        monkeypatch.setenv(env, f"value-of-{env}")
    config = tmp_path / "pixgate.toml"
    config.write_text(block)
    settings = load_settings(config, data_dir=tmp_path)
    relayed = [m for m in settings.models if m.channels]
    assert relayed, doc
    for model in relayed:
        assert model.channel_types and all(settings.channel(n) for n in model.channels)
    for channel in settings.channels:
        assert channel.secrets()  # every example channel has its credentials
