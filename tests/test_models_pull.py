"""`pixgate models pull` against a local fake of the Hugging Face hub's file API, backed by
a saved tiny-sd pipeline: what is downloaded and skipped, loading the pulled model offline
through the loader, and the error paths."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from pixgate.backends.diffusers.builtin import ensure_builtin
from pixgate.backends.diffusers.engine import DiffusersEngine
from pixgate.backends.diffusers.loader import PipelineCache
from pixgate.spec.catalog import TINY_SD, ModelSpec
from pixgate.spec.request import GenerationRequest
from tests.conftest import free_port

PIXGATE = [sys.executable, "-m", "pixgate"]
REPO = "pixgate-test/tiny-sd"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Files a real SD 1.5 repo also holds, that diffusers does not load.
EXTRAS = {
    "unet/diffusion_pytorch_model.bin": "duplicate of the .safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors": "fp16 variant",
    "vae/diffusion_flax_model.msgpack": "Flax weights",
    "v1-5-pruned-emaonly.safetensors": "single-file checkpoint",
    "README.md": "not part of the pipeline",
    "watermarker/notes.txt": "not a component in model_index.json",
}


class FakeHub:
    """The endpoints huggingface_hub calls for model_info and hf_hub_download."""

    def __init__(self, repos: dict[str, dict[str, bytes]], private: set[str] = frozenset()):
        self.repos = repos
        self.private = private
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub.handle(self, body=False)

            def do_GET(self):
                hub.handle(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, req: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(req.path).path)
        self.requests.append((req.command, path))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
            repo = "/".join(parts[2:4])
            if self._refused(req, repo):
                return
            tree = [
                {
                    "type": "file",
                    "oid": hashlib.sha1(data).hexdigest(),
                    "size": len(data),
                    "path": name,
                }
                for name, data in sorted(self.repos[repo].items())
            ]
            self._send(
                req, 200, json.dumps(tree).encode(), body, {"Content-Type": "application/json"}
            )
        elif parts[:2] == ["api", "models"] and (
            len(parts) == 4 or (len(parts) >= 6 and parts[4] == "revision")
        ):
            repo = "/".join(parts[2:4])
            if self._refused(req, repo):
                return
            files = self.repos[repo]
            info = {
                "id": repo,
                "sha": COMMIT,
                "private": False,
                "siblings": [{"rfilename": f, "size": len(data)} for f, data in files.items()],
            }
            self._send(
                req, 200, json.dumps(info).encode(), body, {"Content-Type": "application/json"}
            )
        elif len(parts) >= 5 and parts[2] == "resolve":
            repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
            if self._refused(req, repo):
                return
            data = self.repos[repo].get(filename)
            if data is None:
                self._send(req, 404, b"Entry not found", body, {"X-Error-Code": "EntryNotFound"})
                return
            headers = {
                "X-Repo-Commit": COMMIT,
                "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                "Content-Type": "application/octet-stream",
            }
            self._send(req, 200, data, body, headers)
        else:
            self._send(req, 404, b"not found", body)

    def _refused(self, req, repo: str) -> bool:
        if repo in self.private:
            self._send(
                req, 401, b'{"error":"Invalid credentials"}', True, {"X-Error-Code": "RepoNotFound"}
            )
            return True
        if repo not in self.repos:
            self._send(
                req,
                404,
                b'{"error":"Repository not found"}',
                True,
                {"X-Error-Code": "RepoNotFound"},
            )
            return True
        return False

    @staticmethod
    def _send(req, status: int, data: bytes, body: bool, headers: dict | None = None) -> None:
        req.send_response(status)
        for k, v in (headers or {}).items():
            req.send_header(k, v)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if body and req.command != "HEAD":
            req.wfile.write(data)

    def downloads(self) -> list[str]:
        """Files fetched (GET on /resolve/)."""
        return [
            p.split("/resolve/", 1)[1].split("/", 1)[1]
            for m, p in self.requests
            if m == "GET" and "/resolve/" in p
        ]


@pytest.fixture
def hub(models_dir) -> Iterator[FakeHub]:
    folder = ensure_builtin("tiny-sd", models_dir)
    files = {str(f.relative_to(folder)): f.read_bytes() for f in folder.rglob("*") if f.is_file()}
    files.update({name: b"not loaded: " + name.encode() for name in EXTRAS})
    fake = FakeHub({REPO: files}, private={"pixgate-test/private"})
    fake.thread.start()
    yield fake
    fake.server.shutdown()


def pull(*args: str, endpoint: str, home: Path, extra_env: dict | None = None):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(home / "hf-home"),  # no token or cache of the user's
        PIXGATE_MODELS_PATH=str(home / "models"),
        COLUMNS="200",
        **(extra_env or {}),
    )
    return subprocess.run(
        [*PIXGATE, "models", "pull", *args, "--data-dir", str(home / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.slow
def test_pull_downloads_what_diffusers_needs_and_loads_offline(hub, tmp_path, models_dir):
    result = pull(REPO, endpoint=hub.url, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for name in EXTRAS:  # said what was skipped, and never fetched it
        assert f"skip {name}" in result.stderr
    fetched = set(hub.downloads())
    assert not fetched & set(EXTRAS)
    assert {"model_index.json", "unet/diffusion_pytorch_model.safetensors"} <= fetched
    assert "pulled" in result.stdout

    # the loader finds it in <models_dir>/hub with the hub offline (HF_HUB_OFFLINE=1 here)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    cache = tmp_path / "models" / "hub" / "models--pixgate-test--tiny-sd"
    assert (cache / "refs" / "main").read_text() == COMMIT
    spec = ModelSpec(name="pulled", source=REPO)
    pulled = DiffusersEngine(PipelineCache(tmp_path / "models"))
    builtin = DiffusersEngine(PipelineCache(models_dir))
    req = GenerationRequest(
        model="x", prompt="a boat", width=256, height=256, n=1, seed=4, steps=2, guidance=7.5
    )
    a = np.asarray(pulled.generate(req, spec).images[0])
    b = np.asarray(builtin.generate(req, TINY_SD).images[0])
    assert np.array_equal(a, b)

    # pulling again finds every file in the cache: nothing is downloaded twice
    before = len(hub.downloads())
    again = pull(REPO, endpoint=hub.url, home=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(hub.downloads()) == before


@pytest.mark.slow
def test_pull_errors_are_clear_and_nonzero(hub, tmp_path):
    missing = pull("nobody/nothing", endpoint=hub.url, home=tmp_path)
    assert missing.returncode == 1
    assert "'nobody/nothing' not found" in missing.stderr and "HTTP 404" in missing.stderr

    private = pull("pixgate-test/private", endpoint=hub.url, home=tmp_path)
    assert private.returncode == 1
    assert "HTTP 401" in private.stderr and "HF_TOKEN" in private.stderr

    down = pull(REPO, endpoint=f"http://127.0.0.1:{free_port()}", home=tmp_path)
    assert down.returncode == 1 and "cannot reach the hub" in down.stderr

    offline = pull(REPO, endpoint=hub.url, home=tmp_path, extra_env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 1 and "HF_HUB_OFFLINE" in offline.stderr

    unknown = pull("dall-e-9", endpoint=hub.url, home=tmp_path)
    assert unknown.returncode == 1 and "unknown model 'dall-e-9'" in unknown.stderr

    builtin = pull("tiny-sd", endpoint=hub.url, home=tmp_path)
    assert builtin.returncode == 1 and "nothing to download" in builtin.stderr

    for r in (missing, private, down, offline, unknown, builtin):
        assert "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "models" / "hub" / "models--nobody--nothing" / "snapshots").exists()


# Run in a child process: this one has HF_HUB_OFFLINE set, and huggingface_hub reads it
# (and HF_ENDPOINT) once, at import.
_COMPARE = """
import json, sys
from pathlib import Path
from diffusers import DiffusionPipeline
from pixgate.backends.diffusers.pull import download, plan_pull

repo, home, variant = sys.argv[1], Path(sys.argv[2]), sys.argv[3] or None
ours = plan_pull(repo, home / "ours", variant=variant)
download(ours, home / "ours")
theirs = Path(DiffusionPipeline.download(repo, cache_dir=home / "theirs", variant=variant))
print(json.dumps({
    "planned": sorted(ours.files),
    "theirs": sorted(str(f.relative_to(theirs)) for f in theirs.rglob("*") if f.is_file()),
    "ours": sorted(
        str(f.relative_to(home / "ours")).split("/", 4)[-1]
        for f in (home / "ours").glob("hub/*/snapshots/*/**/*") if f.is_file()
    ),
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("variant", [None, "fp16"])
def test_pull_fetches_exactly_what_diffusers_download_fetches(hub, tmp_path, variant):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"))
    done = subprocess.run(
        [sys.executable, "-c", _COMPARE, REPO, str(tmp_path), variant or ""],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["planned"] == found["ours"] == found["theirs"]
    fp16 = "unet/diffusion_pytorch_model.fp16.safetensors"
    assert (fp16 in found["ours"]) == (variant == "fp16")
    assert not set(found["ours"]) & (set(EXTRAS) - {fp16})
