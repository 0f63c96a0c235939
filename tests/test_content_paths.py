"""Moderation, the explicit label, prompt rewriting and label provenance through a real
server: refusals in each dialect's shape that cost nothing and are logged for the admin
(GET /admin/moderation), the operator's term file reloaded, the output-image classifier,
the visible label on by default and overridable per key, the rewritten prompt returned,
and an img2img output of a labelled input carrying exactly one label, naming its source."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from decimal import Decimal

import pytest
import uvicorn
from PIL import Image, ImageChops
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pixgate.processing.label import embed_xmp, inspect_file, label_key, read_label, xmp_packet
from pixgate.spec.catalog import VOLCENGINE_SIZES, ModelSpec
from tests.conftest import INSTANT, balance
from tests.volcengine_client import CV, REQ_KEY

GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"
FAKE_VOLC = ModelSpec(
    name=REQ_KEY, source="fake:", sizes=VOLCENGINE_SIZES, size_range=(256, 768),
    default_size="512x512",
)  # fmt: skip


def unsafe_score(image: Image.Image) -> float:
    """The output-image classifier hook of these tests: every image is unsafe."""
    return 0.97


@pytest.fixture(scope="module")
def terms_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("terms") / "blocked.txt"
    path.write_text("# the operator's list\nforbidden\n违禁词\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(make_module_server, terms_file):
    return make_module_server(
        models=[INSTANT, FAKE_VOLC], demo=False, blocked_terms_file=str(terms_file)
    )


def admin_get(server, path: str, **params) -> dict:
    with server.client(server.create_key(role="admin")) as c:
        r = c.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()


def decoded(body: dict) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(d["b64_json"]))) for d in body["data"]]


# --- moderation --------------------------------------------------------------------------
REFUSED_SPELLINGS = [
    "a forbidden cat",
    "a ＦＯＲＢＩＤＤＥＮ cat",  # full width
    "a f o r-b.i_d d e n cat",  # spaces and punctuation between the letters
    "a for\u200bbidden cat",  # a zero-width space
    "有違禁詞的画",  # traditional characters for the term 违禁词
]


@pytest.mark.parametrize("prompt", REFUSED_SPELLINGS)
def test_openai_refusals_are_400_content_policy_violation_and_free(server, prompt):
    key = server.create_key(credit="1")
    with server.client(key) as c:
        r = c.post(GENERATIONS, json={"model": "instant", "prompt": prompt})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "content_policy_violation" and error["param"] == "prompt"
    assert "forbidden" not in error["message"] and "违禁" not in error["message"]
    assert balance(server, key) == Decimal("1")
    row = server.key_row(key)
    assert row.images_used == 0 and row.images_reserved == 0


def test_refusals_are_logged_with_key_dialect_field_and_term(server):
    key = server.create_key(credit="1")
    kid = server.key_row(key).id
    with server.client(key) as c:
        c.post(GENERATIONS, json={"model": "instant", "prompt": "ok", "negative_prompt": "违禁词"})
        volc = c.post(CV, json={"req_key": REQ_KEY, "prompt": "FORBIDDEN", "width": 256,
                                "height": 256})  # fmt: skip
    assert volc.json()["code"] == 50412, volc.text
    events = admin_get(server, "/admin/moderation", key=kid)["data"]
    assert [(e["dialect"], e["field"], e["term"]) for e in events] == [
        ("volcengine", "prompt", "forbidden"),
        ("openai", "negative_prompt", "违禁词"),
    ]
    assert all(e["key_id"] == kid and e["created_at"] for e in events)
    assert balance(server, key) == Decimal("1")
    with server.client(server.create_key(role="admin")) as c:
        bad = c.get("/admin/moderation", params={"limit": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


def test_the_term_file_is_reloaded_on_request(server, terms_file):
    key = server.create_key(credit="1")
    body = {"model": "instant", "prompt": "a lighthouse at dusk"}
    with server.client(key) as c:
        assert c.post(GENERATIONS, json=body).status_code == 200
        terms_file.write_text("forbidden\n违禁词\nlighthouse\n", encoding="utf-8")
        with server.client(server.create_key(role="admin")) as admin:
            assert admin.post("/admin/moderation/reload").json() == {"terms": 3}
        assert c.post(GENERATIONS, json=body).status_code == 400
    terms_file.write_text("# the operator's list\nforbidden\n违禁词\n", encoding="utf-8")
    with server.client(server.create_key(role="admin")) as admin:
        assert admin.post("/admin/moderation/reload").json() == {"terms": 2}


def test_refused_output_images_are_not_stored_or_charged(make_server):
    srv = make_server(
        models=[INSTANT, FAKE_VOLC],
        demo=False,
        image_moderation={"entry_point": "tests.test_content_paths:unsafe_score", "threshold": 0.9},
    )
    key = srv.create_key(credit="1")
    with srv.client(key) as c:
        r = c.post(GENERATIONS, json={"model": "instant", "prompt": "a cat", "n": 2})
        volc = c.post(CV, json={"req_key": REQ_KEY, "prompt": "a cat", "width": 256,
                                "height": 256})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "output_image", r.text
    assert r.json()["error"]["code"] == "content_policy_violation"
    assert volc.json()["code"] == 50511, volc.text
    assert balance(srv, key) == Decimal("1")
    assert not [p for p in srv.settings.files_dir.rglob("*") if p.is_file()
                and not p.name.startswith("in-")]  # fmt: skip
    events = admin_get(srv, "/admin/moderation")["data"]
    assert {e["field"] for e in events} == {"output_image[0]", "output_image[1]"}
    assert all(e["score"] == pytest.approx(0.97) and e["job_id"] for e in events)


# --- the explicit label ------------------------------------------------------------------
def test_the_visible_label_is_on_by_default_and_a_key_may_turn_it_off(server):
    on = server.create_key(credit="1")
    off = server.create_key(credit="1", explicit_label=False)
    body = {"model": "instant", "prompt": "a quiet room", "seed": 7, "response_format": "b64_json"}
    images = []
    for key in (on, off):
        with server.client(key) as c:
            r = c.post(GENERATIONS, json=body)
            assert r.status_code == 200, r.text
            images.append(decoded(r.json())[0].convert("RGB"))
    box = ImageChops.difference(*images).getbbox()
    assert box is not None, "the default key's image carries no visible label"
    width, height = images[0].size
    assert box[0] >= width // 2 and box[1] >= height // 2  # bottom-right, the default corner
    assert box[3] - box[1] >= 0.05 * min(width, height)
    # an admin turns it back on for the key
    kid = server.key_row(off).id
    with server.client(server.create_key(role="admin")) as admin:
        patched = admin.patch(f"/admin/keys/{kid}", json={"explicit_label": True})
        assert patched.status_code == 200 and patched.json()["explicit_label"] is True
        assert admin.patch(f"/admin/keys/{kid}", json={}).status_code == 400
    with server.client(off) as c:
        again = decoded(c.post(GENERATIONS, json=body).json())[0].convert("RGB")
    assert ImageChops.difference(again, images[0]).getbbox() is None


# --- prompt rewriting --------------------------------------------------------------------
class FakeChat:
    """An OpenAI-compatible chat endpoint answering with `answer`."""

    def __init__(self) -> None:
        self.answer = "a cat, forbidden style"
        self.seen: list[dict] = []

    async def _chat(self, request: Request) -> JSONResponse:
        self.seen.append(await request.json())
        return JSONResponse(
            {"choices": [{"message": {"role": "assistant", "content": self.answer}}]}
        )

    def __enter__(self) -> FakeChat:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the fake chat server did not start"
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def test_the_rewritten_prompt_is_returned_and_deterministic_per_seed(server):
    key = server.create_key(credit="5")
    body = {"model": "instant", "prompt": "a red fox in snow", "prompt_enhancement": True,
            "seed": 11}  # fmt: skip
    with server.client(key) as c:
        first, second = (c.post(GENERATIONS, json=body).json() for _ in range(2))
        other = c.post(GENERATIONS, json={**body, "seed": 12}).json()
        volc = c.post(CV, json={"req_key": REQ_KEY, "prompt": "千军万马", "width": 256,
                                "height": 256, "use_pre_llm": True, "llm_seed": 3,
                                "use_sr": False})  # fmt: skip
    revised = first["data"][0]["revised_prompt"]
    assert revised.startswith("a red fox in snow") and revised != "a red fox in snow"
    assert first["rewriter"] == "offline" and first["revised_prompt"] == revised
    assert second["data"][0]["revised_prompt"] == revised
    assert other["data"][0]["revised_prompt"].startswith("a red fox in snow")
    rephrased = volc.json()["data"]["rephraser_result"]
    assert rephrased.startswith("千军万马") and len(rephrased) > len("千军万马"), volc.text


def test_a_configured_rewriter_is_used_and_its_prompt_moderated(make_server):
    with FakeChat() as chat:
        srv = make_server(
            models=[INSTANT],
            demo=False,
            blocked_terms=["forbidden"],
            rewriter={"base_url": chat.url, "model": "rewrite-1", "api_key": "sk-chat"},
        )
        key = srv.create_key(credit="1")
        body = {"model": "instant", "prompt": "a cat", "prompt_enhancement": True}
        with srv.client(key) as c:
            refused = c.post(GENERATIONS, json=body)
            chat.answer = "a cat on a windowsill, soft morning light"
            used = c.post(GENERATIONS, json=body)
    assert refused.status_code == 400, refused.text  # the rewrite held a blocked term
    assert refused.json()["error"]["code"] == "content_policy_violation"
    assert used.status_code == 200, used.text
    assert used.json()["data"][0]["revised_prompt"] == chat.answer
    assert used.json()["rewriter"] == "llm"
    assert chat.seen[0]["model"] == "rewrite-1"
    assert chat.seen[0]["messages"][-1]["content"] == "a cat"
    assert balance(srv, key) == Decimal("1") - Decimal(str(INSTANT.price))


# --- label provenance --------------------------------------------------------------------
def test_an_edit_of_a_labelled_image_has_one_label_naming_its_source(server):
    key = server.create_key(credit="1")
    source = Image.linear_gradient("L").convert("RGB").resize((256, 256))
    buf = io.BytesIO()
    source.save(buf, "PNG")
    foreign = {"Label": "1", "ContentProducer": "OTHER-PROVIDER", "ProduceID": "x-42",
               "ReservedCode1": "", "ContentPropagator": "", "PropagateID": "",
               "ReservedCode2": ""}  # fmt: skip
    labelled = embed_xmp(buf.getvalue(), "png", xmp_packet(foreign))
    with server.client(key) as c:
        r = c.post(
            EDITS,
            data={"model": "instant", "prompt": "make it blue", "response_format": "b64_json"},
            files={"image": ("in.png", labelled, "image/png")},
        )
    assert r.status_code == 200, r.text
    data = base64.b64decode(r.json()["data"][0]["b64_json"])
    assert data.count(b"http://www.tc260.org.cn/ns/AIGC/1.0/") == 1  # exactly one label
    seen = inspect_file(data, label_key(server.core._server_secret))
    assert seen.verdict == "valid", seen.reason
    with Image.open(io.BytesIO(data)) as out:
        label = read_label(out)
    assert label["ContentProducer"] == server.settings.aigc_producer
    assert json.loads(label["ReservedCode2"]) == {
        "SourceProducer": "OTHER-PROVIDER",
        "SourceProduceID": "x-42",
    }
