"""The core hands dialects views, not ORM rows, and routers hold no SQL: checked on the
source (a forgotten shortcut fails here, not in review) and on the views themselves."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from pathlib import Path

import pytest

from pixgate.core.views import GenerationResult, TaskView, task_view
from pixgate.db import Job

API = Path(__file__).parents[1] / "src" / "pixgate" / "api"
# The core's wiring that only the CLI, workers and tests may touch.
WIRING = r"(db|queue|storage|catalog|settings|box|limiter|replays|metrics|worker)"
REACHING = re.compile(rf"(core\(request\)|app_core|\bcore)\.{WIRING}\b")
# The file route is the Storage seam's own client (it asks storage for the bytes), and the
# app factory is the composition root (it hands the core's metrics to the middleware).
WIRING_USERS = {"routes/files.py", "app.py"}


def _sources() -> list[tuple[str, str]]:
    return [(str(p.relative_to(API)), p.read_text(encoding="utf-8")) for p in API.rglob("*.py")]


def test_dialects_and_routers_call_the_parts_not_the_wiring():
    found = [
        f"{name}:{n}: {line.strip()}"
        for name, text in _sources()
        if name not in WIRING_USERS
        for n, line in enumerate(text.splitlines(), 1)
        if REACHING.search(line)
    ]
    assert not found, "\n".join(found)


def test_routers_hold_no_sql():
    sql = re.compile(r"\b(sqlalchemy|select\(|\.execute\(|\.scalars?\(|db\.(read|write)\()")
    found = [f"{name}: {m.group(0)}" for name, text in _sources() for m in sql.finditer(text)]
    assert not found, "\n".join(found)


def test_dialects_never_see_job_rows():
    found = [name for name, text in _sources() if re.search(r"\bJob\b", text)]
    assert not found


def _job(**overrides) -> Job:
    values = dict(
        id="j1",
        user_id="u1",
        key_id="k1",
        request_id="r1",
        model="tiny-sd",
        kind="txt2img",
        status="failed",
        request={
            "model": "tiny-sd",
            "prompt": "a boat",
            "width": 256,
            "height": 256,
            "n": 1,
            "seed": 7,
        },
        n=2,
        n_succeeded=1,
        seed=7,
        cost_minor=2000,
        progress=0.5,
        created_at=datetime(2024, 1, 1),
        images=[{"path": "20240101/a.png", "expires": 99, "seed": 7, "format": "png"}],
        error_code="cancelled",
        task_options={"response_format": "b64_json", "base_url": "http://x"},
        webhook_url="http://hook",
        webhook_status="delivered",
        webhook_attempts=1,
        webhook_next_at=datetime(2024, 1, 2),
    )
    values.update(overrides)
    return Job(**values)


def test_task_view_reads_every_field_once_and_is_frozen():
    view = task_view(_job())
    assert isinstance(view, TaskView)
    assert view.task_status == "cancelled" and view.status == "failed" and view.finished
    assert view.output_size == (256, 256) and view.prompt == "a boat"
    assert view.response_format == "b64_json" and view.base_url == "http://x"
    assert view.webhook is not None and view.webhook.next_attempt_at is None  # not pending
    result = view.result()
    assert isinstance(result, GenerationResult)
    assert result.job_id == "j1" and result.images[0].path == "20240101/a.png"
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.status = "succeeded"  # type: ignore[misc]


def test_task_view_of_a_row_this_node_cannot_parse_still_has_a_size():
    view = task_view(_job(request={"width": 64, "height": 32, "kind": "from-the-future"}))
    assert view.output_size == (64, 32)
    pending = task_view(_job(webhook_status="pending"))
    assert pending.webhook.next_attempt_at == datetime(2024, 1, 2)
