"""The API as FastAPI documents it: a valid OpenAPI document with a response schema for
every JSON route, Swagger UI served from the package (no CDN), `GET /`, and admin routes
closed at the router to everyone but admins."""

from __future__ import annotations

import re

import httpx
import pytest
from openapi_spec_validator import validate

from tests.conftest import RunningServer

NOT_JSON = {"/metrics", "/files/{path}"}


@pytest.fixture(scope="module")
def srv(make_module_server) -> RunningServer:
    # the admin sweep below sends many 401s
    return make_module_server(run_workers=False, unauthenticated_per_ip_per_minute=1000)


@pytest.fixture(scope="module")
def document(srv) -> dict:
    r = httpx.get(srv.url + "/openapi.json")
    assert r.status_code == 200
    return r.json()


def test_document_is_valid_openapi(document):
    validate(document)  # raises on a dangling $ref such as the old #/$defs/LoraRef
    assert "$defs" not in str(document["paths"])
    body = document["paths"]["/v1/images/generations"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"prompt", "lora", "hires", "async"} <= set(schema["properties"])


def test_every_json_route_documents_its_response(document):
    missing = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)  # bad input is a 400 here
            if path in NOT_JSON:
                continue
            ok = responses.get("200") or responses.get("202") or {}
            schema = ok.get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" not in schema:
                missing.append(f"{method.upper()} {path}")
    assert not missing, missing
    generations = document["paths"]["/v1/images/generations"]["post"]["responses"]
    assert generations["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/Task")


def test_responses_match_their_documented_models(srv):
    """The models describe what the handlers send (they never serialize it)."""
    from pixgate.api import schemas, schemas_dialects

    key = srv.create_key(credit="1")
    pairs = [
        ("/", schemas.ServiceInfo),
        ("/healthz", schemas.Health),
        ("/v1/models", schemas.ModelList),
        ("/v1/samplers", schemas.SamplerList),
        ("/v1/styles", schemas.StyleList),
        ("/v1/loras", schemas.LoraList),
        ("/v1/dashboard/billing/credit_grants", schemas.CreditSummary),
        ("/v1/usage", schemas.UsageList),
        ("/v1/tasks", schemas.TaskList),
        ("/v1/webhooks/secret", schemas.WebhookSecret),
        ("/api/v1/draw/models", schemas_dialects.AichatModels),
        ("/api/v1/draw/samplers", schemas_dialects.AichatSamplers),
    ]
    with srv.client(key) as c:
        for path, model in pairs:
            r = c.get(path)
            assert r.status_code == 200, (path, r.text)
            parsed = model.model_validate(r.json())
            assert set(r.json()) <= set(parsed.model_dump()), path


def test_root_says_what_this_is(srv):
    r = httpx.get(srv.url + "/")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "pixgate" and body["version"]
    for link in ("/docs", "/v1/models", "/healthz"):
        assert link in body["links"].values()


def test_docs_work_offline(srv):
    """Swagger UI and ReDoc load their scripts from this server, never from a CDN."""
    for page in ("/docs", "/redoc"):
        html = httpx.get(srv.url + page).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        sources += re.findall(r"url: '([^']+)'", html)
        assert sources, html
        for source in sources:
            assert not source.startswith(("http:", "https:", "//")), source
            r = httpx.get(srv.url + source)
            assert r.status_code == 200 and len(r.content) > 10, source
    bundle = httpx.get(srv.url + "/static/docs/swagger-ui-bundle.js")
    assert "javascript" in bundle.headers["content-type"] and len(bundle.content) > 100_000


def _admin_routes(srv) -> list[tuple[str, str]]:
    """Every (method, path) the app serves under /admin, however its routers nest."""
    try:  # FastAPI >= 0.165 includes routers lazily: app.routes holds the routers
        from fastapi.routing import iter_route_contexts

        routes = list(iter_route_contexts(srv.app.routes))
    except ImportError:
        routes = list(srv.app.routes)
    found = []
    for route in routes:
        path = getattr(route, "path", None) or ""
        if path.startswith("/admin"):
            found += [(m, re.sub(r"\{[^}]+\}", "x", path)) for m in sorted(route.methods or ())]
    return found


def test_every_admin_route_is_closed_to_users_and_strangers(srv):
    routes = _admin_routes(srv)
    assert len(routes) >= 11
    user = srv.create_key()
    for method, path in routes:
        r = httpx.request(method, srv.url + path, json={})
        assert r.status_code == 401, (method, path, r.text)
        r = httpx.request(
            method, srv.url + path, json={}, headers={"Authorization": f"Bearer {user}"}
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required", (
            method,
            path,
        )
    admin = srv.create_key(role="admin")
    r = httpx.get(srv.url + "/admin/users", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200
