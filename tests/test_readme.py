"""README.md works as written: its shell and Python examples run, in order, against a live
demo server set up as the quick start sets one up, with only the host and port changed.

Blocks are the fenced ```sh, ```bash and ```python ones; a block right after a
`<!-- no-test: why -->` line is skipped (installs, and `scripts/serve` itself, which this
test stands in for). Shell blocks run like one terminal session: variables a block sets
(`export ADMIN_KEY=...`) and files it writes (`photo.png`) are there for the blocks
after it, if it exports them, and so do the Python blocks (`os.environ`). `curl`
fails on an HTTP error status, so an example that is refused fails the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pixgate.settings import load_settings
from tests.conftest import RunningServer, free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
NO_TEST = re.compile(r"^<!--\s*no-test\b.*-->\s*$")
RUNNABLE = {"sh": "bash", "bash": "bash", "python": "python"}
PIXGATE = [sys.executable, "-m", "pixgate"]
QUICK_START_HOSTS = ("127.0.0.1:8000", "localhost:8000")

# Each shell block runs after this: strict mode, the state earlier blocks left, and a curl
# that fails on HTTP errors (the README's `curl -s` would print an error body and exit 0).
SHELL_PRELUDE = """set -euo pipefail
[ ! -f .state.sh ] || source .state.sh
curl() { command curl --fail-with-body "$@"; }
"""
SHELL_EPILOGUE = """
export -p > .state.sh
env -0 > .state.env
"""


@dataclass(frozen=True)
class Example:
    line: int  # where the block starts in README.md (1-based)
    language: str  # bash | python
    code: str
    skipped: str | None  # the no-test reason, if any


def readme_examples(text: str) -> list[Example]:
    """Every fenced block of a runnable language, in order."""
    examples: list[Example] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, language = i, match.group(1)
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if language not in RUNNABLE:
            continue
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        skipped = before.strip() if NO_TEST.match(before.strip()) else None
        examples.append(Example(start + 1, RUNNABLE[language], "\n".join(body) + "\n", skipped))
    return examples


def test_readme_examples_are_found_and_few_are_skipped():
    examples = readme_examples(README.read_text())
    runnable = [e for e in examples if not e.skipped]
    assert len(runnable) >= 12 and any(e.language == "python" for e in runnable)
    for e in examples:
        if e.skipped:  # only what cannot run here: installs and the quick start itself
            assert "pip install" in e.code or "scripts/serve" in e.code, e


def test_docs_stay_inside_the_repo():
    """No document points at files outside the repository, and every relative link resolves."""
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert "shared/" not in text, doc
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            resolved = (doc.parent / target).resolve()
            assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{doc.name}: {target}"


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory, models_dir) -> Iterator[tuple[RunningServer, dict[str, str]]]:
    """A demo server and the environment of the shell the README's reader types in: the
    key `scripts/serve` prints (made the same way), the venv's `pixgate` on PATH."""
    data = tmp_path_factory.mktemp("readme-data")
    settings = load_settings(
        None,
        data_dir=data,
        models_path=models_dir,
        port=free_port(),
        demo=True,
        log_level="WARNING",
    )
    server = start_server(settings)
    # The reader's shell: none of scripts/serve's settings but the data dir, which this
    # test chooses instead of the per-user default (both sides would find that one alone).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXGATE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PIXGATE_DATA_DIR"] = str(data)
    made = subprocess.run(  # the first key, as scripts/serve makes it
        [*PIXGATE, "keys", "create", "--name", "quickstart", "--plan", "paid", "--json"],
        capture_output=True,
        text=True,
        env={**env, "PIXGATE_DEMO": "true"},
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    env["KEY"] = json.loads(made.stdout)["key"]
    try:
        yield server, env
    finally:
        server.stop()


def _state(work: Path, fallback: dict[str, str]) -> dict[str, str]:
    """The environment the last shell block left (exported variables included)."""
    path = work / ".state.env"
    if not path.exists():
        return fallback
    pairs = (item.split("=", 1) for item in path.read_bytes().decode().split("\0") if item)
    return dict(p for p in pairs if len(p) == 2)


@pytest.mark.slow
def test_readme_examples_run_against_a_demo_server(quick_start, tmp_path):
    server, env = quick_start
    host = server.url.removeprefix("http://")
    ran = 0
    for example in readme_examples(README.read_text()):
        if example.skipped:
            continue
        code = example.code
        for quick in QUICK_START_HOSTS:
            code = code.replace(quick, host)
        if example.language == "bash":
            command = ["bash", "-c", SHELL_PRELUDE + code + SHELL_EPILOGUE]
        else:
            command = [sys.executable, "-c", code]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_state(tmp_path, env),
            timeout=300,
        )
        assert result.returncode == 0, (
            f"README.md line {example.line} ({example.language}) exited {result.returncode}\n"
            f"{example.code}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )
        ran += 1
    assert ran >= 12
    assert (tmp_path / "out.png").stat().st_size > 1000  # the Volcengine example's image


@pytest.mark.slow
def test_volcengine_example_fails_loudly_when_refused(quick_start, tmp_path):
    """Run in a plain shell (no pipefail) with a key whose account has no credit, the
    Volcengine curl example exits non-zero with the refusal and writes no out.png."""
    server, env = quick_start
    [example] = [
        e
        for e in readme_examples(README.read_text())
        if e.language == "bash" and "binary_data_base64" in e.code
    ]
    made = subprocess.run(  # without demo mode nothing is priced: a grant of 0
        [*PIXGATE, "keys", "create", "--plan", "paid", "--json"],
        capture_output=True,
        text=True,
        env={**env, "PIXGATE_DEMO": "false"},
        timeout=120,
    )
    broke = json.loads(made.stdout)["key"]
    code = example.code.replace(QUICK_START_HOSTS[0], server.url.removeprefix("http://"))
    result = subprocess.run(
        ["bash", "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "KEY": broke},
        timeout=120,
    )
    assert result.returncode != 0
    assert "refused: 50400" in result.stderr and "Insufficient credit" in result.stderr
    assert not (tmp_path / "out.png").exists()
