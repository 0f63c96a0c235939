"""Test fixtures: real pixgate servers on loopback ports, in threads of this process."""

from __future__ import annotations

import os

# Model loading must never reach for the network in tests (CI has none).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# An error message missing a template value raises instead of rendering a gap (servers in
# subprocesses inherit it).
os.environ["PIXGATE_STRICT_MESSAGES"] = "1"
# One torch thread per process (before torch is imported; subprocesses inherit it). The
# test process also runs the servers' event loops and the clients, and other processes share
# the cores: two OpenMP threads spin-waiting for each other made a one-step tiny-sd image
# take 3-5 s on a busy 2-core machine instead of 0.2 s. Set OMP_NUM_THREADS to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import uvicorn

from pixgate.accounts import keys
from pixgate.api.app import create_app
from pixgate.db import Database
from pixgate.settings import Settings, load_settings
from pixgate.spec.catalog import ModelSpec

GENERATIONS = "/v1/images/generations"
SMALL_REQUEST = {"model": "tiny-sd", "prompt": "x", "size": "256x256", "num_inference_steps": 1}
# A model of the fake backend (solid colours at once): for tests whose subject is
# admission, limits or billing, so that how fast this machine draws never decides them.
INSTANT = ModelSpec(name="instant", source="fake:", sizes=["256x256"], default_size="256x256")


def pytest_configure(config: pytest.Config) -> None:
    """Compile pixgate's modules to bytecode once, before any test runs. Where the
    environment sets PYTHONDONTWRITEBYTECODE (this machine's does), nothing else writes
    them, and each of the ~100 `pixgate` subprocesses of the suite compiled them again
    (0.2 s each); they still read bytecode that is there. Under pytest-xdist the
    controller does it, before the workers start."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import compileall

    import pixgate

    compileall.compile_dir(Path(pixgate.__file__).parent, quiet=1)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """How many pytest-xdist workers `-n auto` (pyproject.toml's addopts) starts: one per
    core for the whole suite (a `-m`/`-k` selection of it included); none when files or
    tests are named, where starting workers (each imports torch and diffusers, ~8 s)
    costs more than it saves. PYTEST_XDIST_AUTO_NUM_WORKERS overrides both."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist reads it
    if config.args_source != pytest.Config.ArgsSource.TESTPATHS:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores if cores and cores > 1 else 0


def generate(client: httpx.Client, **fields) -> httpx.Response:
    """POST a small, fast tiny-sd request, with `fields` overriding its defaults."""
    return client.post(GENERATIONS, json={**SMALL_REQUEST, **fields})


def balance(server: RunningServer, key: str) -> Decimal:
    """The account's available credit, as its owner sees it."""
    with server.client(key) as c:
        return Decimal(c.get("/v1/dashboard/billing/credit_grants").json()["total_available"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    settings: Settings
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    app: object

    @property
    def core(self):
        return self.app.state.pixgate

    def client(self, key: str | None = None, headers: dict | None = None) -> httpx.Client:
        merged = {"Authorization": f"Bearer {key}"} if key else {}
        merged.update(headers or {})
        return httpx.Client(base_url=self.url, headers=merged, timeout=120)

    def create_key(
        self,
        images: int | None = None,
        prefix: str = "sk-",
        plan: str = "paid",
        credit: str | None = None,
        role: str = "user",
        **spec,
    ) -> str:
        """A key for a new user (plan `paid` unless said: no rate limits in the way),
        optionally with `credit` (currency) on the account."""
        return asyncio.run(_create_key(self.settings, images, prefix, plan, credit, role, spec))

    def key_row(self, raw: str):
        return asyncio.run(_key_row(self.settings, raw))

    def server_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server runs on (to call the core from a test)."""
        return self.core.loop

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "server did not stop"


async def _create_key(settings: Settings, images, prefix, plan, credit, role, spec) -> str:
    from decimal import Decimal

    from pixgate.accounts import users
    from pixgate.accounts.secrets import SecretBox
    from pixgate.money import to_minor

    db = Database(settings.db_url)
    try:
        await db.migrate()
        grant = to_minor(Decimal(credit)) if credit else 0
        user = await users.create_user(
            db, users.NewUser(f"u-{uuid.uuid4().hex[:10]}", role, plan, grant)
        )
        box = SecretBox.for_data_dir(settings.data_dir, settings.master_key)
        key_spec = keys.KeySpec(image_cap=images, prefix=prefix, **spec)
        return (await keys.create_key(db, user.id, key_spec, box)).key
    finally:
        await db.dispose()


async def _key_row(settings: Settings, raw: str):
    db = Database(settings.db_url)
    try:
        return (await keys.authenticate(db, raw)).key
    finally:
        await db.dispose()


def start_server(settings: Settings, wait_ready: bool = True) -> RunningServer:
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="uvicorn")
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server failed to start")
        time.sleep(0.02)
    running = RunningServer(settings, url, server, thread, app)
    if wait_ready:  # the worker has preloaded its models
        while time.monotonic() < deadline:
            worker = running.core.worker
            if worker is None or worker.ready:
                break
            time.sleep(0.05)
    return running


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One PostgreSQL cluster for the session (tests get their own database)."""
    from tests.services import postgres_cluster

    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    from tests.services import redis_server

    with redis_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server) -> str:
    from tests.services import create_database

    return asyncio.run(create_database(postgres_server))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """One builtin build shared by every test (the build is deterministic). Under
    pytest-xdist the workers share it too: a build is saved to a temporary folder and
    renamed into place, so two workers building the same model at once is safe."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "models"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("models")


def server_settings(data_dir: Path, models_dir: Path, **overrides) -> Settings:
    """The settings of a test server: the demo catalog on a free port, quiet JSON logs,
    no sweeping during a test, and no preloading: a worker loads a model at its first job
    rather than every build of the catalog up front (~1.5 s a server, for models most tests
    never ask for). `overrides` win."""
    values = dict(
        data_dir=data_dir,
        models_path=models_dir,
        port=free_port(),
        demo=True,
        log_json=True,
        log_level="WARNING",
        sweep_interval_seconds=3600,
        preload=False,
    )
    values.update(overrides)
    return load_settings(None, **values)


@pytest.fixture
def make_settings(tmp_path, models_dir) -> Callable[..., Settings]:
    def make(**overrides) -> Settings:
        return server_settings(
            overrides.pop("data_dir", tmp_path / "data"), models_dir, **overrides
        )

    return make


@contextmanager
def _server_factory(data_dir: Callable[[], Path], models_dir: Path):
    started: list[RunningServer] = []

    def make(**overrides) -> RunningServer:
        folder = overrides.pop("data_dir", None) or data_dir()
        running = start_server(server_settings(folder, models_dir, **overrides))
        started.append(running)
        return running

    try:
        yield make
    finally:
        for running in started:
            if running.thread.is_alive():
                running.stop()


@pytest.fixture
def make_server(tmp_path, models_dir) -> Iterator[Callable[..., RunningServer]]:
    """Servers for one test: for tests that restart a server, change settings mid-test or
    count things across the whole deployment (queue depth, metrics, audits)."""
    with _server_factory(lambda: tmp_path / "data", models_dir) as make:
        yield make


@pytest.fixture(scope="module")
def make_module_server(tmp_path_factory, models_dir) -> Iterator[Callable[..., RunningServer]]:
    """Servers shared by the tests of one module, each with its own data dir: starting one
    (migrations, a worker preloading the catalog's builds) costs seconds, so tests that only
    make their own keys and read their own results share one. Stopped after the module.

    All of a module's clients come from 127.0.0.1, so the per-IP limit on failed
    authentications (30 a minute) is raised unless given: a module's 401 tests would
    otherwise trip it for the tests after them (tests/test_access.py tests the limit)."""
    with _server_factory(lambda: tmp_path_factory.mktemp("data"), models_dir) as make:

        def make_shared(**overrides) -> RunningServer:
            overrides.setdefault("unauthenticated_per_ip_per_minute", 10_000)
            return make(**overrides)

        yield make_shared


@pytest.fixture
def server(make_server) -> RunningServer:
    return make_server()


@pytest.fixture
def key(server) -> str:
    return server.create_key()
