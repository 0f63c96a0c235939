"""Bodies a hostile client sends, to every dialect: each is a 400 (or 413, or 401 before
the body is read) in that dialect's own error shape, naming the field, never a 500.

One server for the module, without workers: nothing here may reach the engine."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import httpx
import psutil
import pytest

from tests.conftest import RunningServer
from tests.images import gradient_png

DEEP = "[" * 1200 + "]" * 1200  # json.loads gives up at ~1000 levels (RecursionError)
NESTED = "[" * 80 + "]" * 80  # parses, but deeper than pixgate's cap of 64
SURROGATE = '"\\ud800"'  # a lone surrogate: cannot be encoded to UTF-8 again
HUGE_INT = "1" * 5000  # Python refuses int() of more than 4300 digits
OK_OPENAI = {"model": "tiny-sd", "prompt": "a cat", "size": "256x256"}
OK_VOLC = {"req_key": "high_aes_general_v21_L", "prompt": "a cat"}


@pytest.fixture(scope="module")
def srv(make_module_server) -> RunningServer:
    # the refusals here are the subject
    return make_module_server(run_workers=False, unauthenticated_per_ip_per_minute=1000)


@pytest.fixture(scope="module")
def key(srv) -> str:
    return srv.create_key(credit="10")


def with_field(base: dict, field: str, raw_value: str) -> bytes:
    """`base` as JSON with `field` set to `raw_value`, written as raw JSON text."""
    others = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in base.items() if k != field]
    return ("{" + ", ".join([*others, f'"{field}": {raw_value}']) + "}").encode()


def hostile_cases(base: dict, strings: tuple[str, ...]) -> list[tuple[bytes, tuple[str, ...]]]:
    """(body, fields the error may name) for each hazard."""
    cases = [(DEEP.encode(), ("body",)), (with_field(base, "prompt", DEEP), ("body", "prompt"))]
    cases.append((with_field(base, "seed", NESTED), ("seed",)))
    cases += [(with_field(base, name, SURROGATE), (name,)) for name in strings]
    cases.append((with_field(base, "seed", HUGE_INT), ("seed",)))
    cases.append((with_field(base, "seed", "NaN"), ("seed",)))
    cases.append((b'{"\\udc00": 1, "prompt": "x"}', ("body",)))
    return cases


# --- the shapes -----------------------------------------------------------------------------
def openai_param(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error["param"]


def yuecheng_message(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["success"] is False and set(body) == {"success", "error"}
    return body["error"]


def volc_message(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    error = r.json()["ResponseMetadata"]["Error"]
    assert error["Code"] in ("InvalidParameter", "MissingParameter")
    return error["Message"]


def aichat_param(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 400 and body["data"]["status"] == "failed"
    return body["data"]["error"]["param"]


def assert_names(named: str, fields: tuple[str, ...]) -> None:
    assert any(named == f or named.startswith(f + ".") for f in fields), (named, fields)


def assert_mentions(message: str, fields: tuple[str, ...]) -> None:
    assert any(f"'{f}" in message for f in fields), (message, fields)


# --- every hazard, every dialect ---------------------------------------------------------------
def test_openai_generations(srv, key):
    with srv.client(key) as c:
        for body, fields in hostile_cases(OK_OPENAI, ("prompt", "negative_prompt", "user")):
            r = c.post("/v1/images/generations", content=body)
            assert_names(openai_param(r), fields)
        lora = '[{"name": "\\ud800"}]'
        r = c.post("/v1/images/generations", content=with_field(OK_OPENAI, "lora", lora))
        assert openai_param(r).startswith("lora")


def test_redeem(srv, key):
    with srv.client(key) as c:
        for body, fields in hostile_cases({"code": "abcd"}, ("code",)):
            assert_names(openai_param(c.post("/v1/redeem", content=body)), fields)


def test_yuecheng(srv, key):
    base = {"api_key": key, "prompt": "a cat"}
    for path in ("/yuecheng/v1/generate", "/API/AI-picture/endpoint_pic.php"):
        for body, fields in hostile_cases(base, ("prompt", "negative_prompt", "api_key")):
            assert_mentions(yuecheng_message(httpx.post(srv.url + path, content=body)), fields)


@pytest.mark.parametrize("action", ["CVProcess", "CVSync2AsyncSubmitTask"])
def test_volcengine(srv, key, action):
    url = f"{srv.url}/volcv?Action={action}&Version=2022-08-31"
    with srv.client(key) as c:
        for body, fields in hostile_cases(OK_VOLC, ("prompt", "negative_prompt", "req_key")):
            assert_mentions(volc_message(c.post(url, content=body)), fields)


def test_volcengine_get_result_req_json(srv, key):
    url = f"{srv.url}/volcv?Action=CVSync2AsyncGetResult&Version=2022-08-31"
    base = {"req_key": "high_aes_general_v21_L", "task_id": "x"}
    inner = [DEEP, NESTED, '{"return_url": ' + SURROGATE + "}", '{"x": ' + HUGE_INT + "}"]
    with srv.client(key) as c:
        for text in inner:  # req_json as the seed sends it: JSON in a string
            r = c.post(url, json={**base, "req_json": text})
            assert_mentions(volc_message(r), ("req_json",))
        for body, fields in hostile_cases(base, ("task_id",)):
            assert_mentions(volc_message(c.post(url, content=body)), fields)
        r = c.post(url, content=with_field(base, "req_json", '{"logo_info": ' + NESTED + "}"))
        assert_mentions(volc_message(r), ("req_json",))


def test_aichat_params_and_query(srv, key):
    image = {"image": ("1.png", gradient_png(), "image/png")}
    base = {"prompt": "a cat"}
    for body, fields in hostile_cases(base, ("prompt", "negative_prompt", "simper")):
        r = httpx.post(f"{srv.url}/api/image2image?key={key}", files=image, data={"params": body})
        assert_names(aichat_param(r), (*(f"params.{f}" for f in fields), "params"))
    for body, fields in hostile_cases({"task_id": "x"}, ("task_id",)):
        r = httpx.post(f"{srv.url}/api/v1/draw/query", content=body, headers={"apikey": key})
        assert_names(aichat_param(r), fields)


def test_multipart_fields(srv, key):
    """Edits' form fields: a part decoded as UTF-7 (the client names the charset) turns
    `+2AA-` into a lone surrogate; a seed of 5000 digits."""
    image = gradient_png()
    for name in ("prompt", "negative_prompt", "user"):
        boundary = "pixgateboundary"
        parts = [
            (f'name="{name}"', b"+2AA-"),
            ('name="image"; filename="a.png"\r\nContent-Type: image/png', image),
        ]
        if name != "prompt":
            parts.append(('name="prompt"', b"a cat"))
        body = (
            b"".join(
                f"--{boundary}\r\nContent-Disposition: form-data; {disp}\r\n\r\n".encode()
                + data
                + b"\r\n"
                for disp, data in parts
            )
            + f"--{boundary}--\r\n".encode()
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}; charset=utf-7"}
        with srv.client(key) as c:
            r = c.post("/v1/images/edits", content=body, headers=headers)
        assert openai_param(r) == name
    with srv.client(key) as c:
        r = c.post(
            "/v1/images/edits",
            files={"image": ("a.png", image, "image/png")},
            data={"prompt": "a cat", "seed": HUGE_INT},
        )
    assert openai_param(r) == "seed"


# --- strict types ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"seed": True}, "seed"),
        ({"seed": "5"}, "seed"),
        ({"async": "yes"}, "async"),
        ({"n": 1.0}, "n"),
        ({"num_inference_steps": "4"}, "num_inference_steps"),
    ],
)
def test_strict_types_openai(srv, key, patch, field):
    with srv.client(key) as c:
        assert openai_param(c.post("/v1/images/generations", json={**OK_OPENAI, **patch})) == field


def test_strict_types_other_dialects(srv, key):
    r = httpx.post(
        srv.url + "/yuecheng/v1/generate", json={"api_key": key, "prompt": "x", "batch_size": "1"}
    )
    assert "'batch_size'" in yuecheng_message(r)
    url = f"{srv.url}/volcv?Action=CVProcess&Version=2022-08-31"
    with srv.client(key) as c:
        for patch in ({"seed": "5"}, {"use_sr": "yes"}, {"logo_info": {"add_logo": "true"}}):
            message = volc_message(c.post(url, json={**OK_VOLC, **patch}))
            assert f"'{next(iter(patch))}" in message
    image = {"image": ("1.png", gradient_png(), "image/png")}
    for patch in ({"seed": "5"}, {"hire": True}, {"as_prompt": "yes"}):
        params = json.dumps({"prompt": "x", **patch})
        r = httpx.post(f"{srv.url}/api/image2image?key={key}", files=image, data={"params": params})
        assert aichat_param(r) == next(iter(patch))


def test_seed_documents_examples_still_validate():
    """The request bodies the seed documents show (numbers as JSON numbers, booleans as
    JSON booleans) pass the strict models."""
    from pixgate.api.dialects.aichat_params import Image2ImageParams
    from pixgate.api.dialects.openai import ImageGenerationRequest
    from pixgate.api.dialects.volcengine import GenerateFields, LogoInfo
    from pixgate.api.dialects.yuecheng import YuechengRequest
    from pixgate.api.validation import validate

    validate(YuechengRequest, {"api_key": "yc-pic-x", "prompt": "猫", "batch_size": 1, "seed": 1})
    validate(
        ImageGenerationRequest,
        {"model": "FLUX.1-schnell", "prompt": "x", "image_size": "1024x1024"}
        | {"prompt_enhancement": True, "seed": 123, "guidance_scale": 7, "async": True},
    )
    volc = {"req_key": "high_aes_general_v21_L", "prompt": "千军万马", "llm_seed": -1, "seed": -1}
    volc |= {"scale": 3.5, "ddim_steps": 25, "width": 512, "height": 512, "use_pre_llm": True}
    validate(GenerateFields, volc | {"use_sr": True, "return_url": True})
    validate(LogoInfo, {"add_logo": False, "position": 0, "language": 0, "opacity": 0.3})
    validate(
        Image2ImageParams,
        {"number": 4, "hire": 0, "seed": -1, "steps": 20, "cfg_scale": 7, "lora_scale": 75}
        | {"denoising_strength": 70, "as_prompt": True, "prompt": "", "size_id": "1:1"}
        | {"simper": "DPM++ 2M Karras", "negative_prompt": "easynegative"},
    )


# --- size limits while the body streams --------------------------------------------------------
def raw_exchange(
    srv: RunningServer, head: str, first: bytes, more: Callable[[socket.socket], None] | None = None
) -> tuple[int, bytes, float]:
    """Send `head` and `first` on a raw connection and read the answer without sending the
    rest of the body: a server that waited for it would time out here. `more` then runs
    on the socket (to send the rest)."""
    with socket.create_connection(("127.0.0.1", srv.settings.port), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(head.encode() + first)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        header, _, body = data.partition(b"\r\n\r\n")
        length = int(header.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += sock.recv(65536)
        elapsed = time.monotonic() - start
        if more is not None:
            more(sock)
    return int(header.split(b" ")[1]), body, elapsed


def head(path: str, length: int | None, extra: str = "", ctype="application/json") -> str:
    size = (
        f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    )
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n{size}{extra}\r\n"


def test_declared_length_over_the_limit_is_refused_unread(srv, key):
    bearer = f"Authorization: Bearer {key}\r\n"
    status, body, _ = raw_exchange(srv, head("/v1/images/generations", 10**9, bearer), b"{")
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"
    assert "1000000000 bytes" in json.loads(body)["error"]["message"]
    status, body, _ = raw_exchange(srv, head("/yuecheng/v1/generate", 10**9), b"{")
    assert status == 400 and "1048576" in json.loads(body)["error"]  # Yuecheng folds 413
    form = "multipart/form-data; boundary=x"
    status, body, _ = raw_exchange(srv, head("/v1/images/edits", 10**9, bearer, form), b"--x")
    assert status == 413
    status, body, _ = raw_exchange(srv, head(f"/api/image2image?key={key}", 10**9, "", form), b"")
    assert status == 413 and json.loads(body)["code"] == 413
    url = "/volcv?Action=CVProcess&Version=2022-08-31"
    status, body, _ = raw_exchange(srv, head(url, 10**9, bearer), b"{")
    assert status == 413 and "ResponseMetadata" in json.loads(body)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_chunked_body_is_refused_once_past_the_limit(srv, key):
    """No Content-Length: the running total is checked while the chunks arrive, and the
    413 comes without the body ever ending."""
    from pixgate.api.bodies import MAX_JSON_BYTES

    past = b"".join(chunk(b" " * 65536) for _ in range(MAX_JSON_BYTES // 65536 + 2))
    bearer = f"Authorization: Bearer {key}\r\n"
    status, body, _ = raw_exchange(srv, head("/v1/redeem", None, bearer), past)
    error = json.loads(body)["error"]
    assert (
        status == 413
        and error["code"] == "body_too_large"
        and str(MAX_JSON_BYTES) in error["message"]
    )
    status, body, _ = raw_exchange(srv, head("/yuecheng/v1/generate", None), past)
    assert status == 400 and json.loads(body)["success"] is False
    form = "multipart/form-data; boundary=x"
    from pixgate.api.dialects.openai_edits import MAX_FORM_BYTES

    big = chunk(b'--x\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\n')
    big += b"".join(chunk(b"\0" * (1 << 20)) for _ in range(MAX_FORM_BYTES // (1 << 20) + 2))
    status, body, _ = raw_exchange(srv, head("/v1/images/edits", None, bearer, form), big)
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"


BIG = 50 * 1024 * 1024


@pytest.mark.parametrize(
    ("path", "auth", "ctype"),
    [
        ("/v1/images/generations", "Authorization: Bearer sk-nope\r\n", "application/json"),
        ("/v1/images/edits", "", "multipart/form-data; boundary=x"),
        ("/api/image2image?key=nope", "", "multipart/form-data; boundary=x"),
        ("/volcv?Action=CVProcess&Version=2022-08-31", "", "application/json"),
        ("/v1/redeem", "Authorization: Bearer sk-nope\r\n", "application/json"),
    ],
)
def test_unknown_key_refused_before_the_body_is_read(srv, path, auth, ctype):
    """50 MB with a bad or missing key: the 401 arrives after the first megabyte was sent,
    and the server, which drops the rest as it arrives, does not grow by the body."""
    process = psutil.Process()
    before = process.memory_info().rss
    rest = b"\0" * (1 << 20)

    def send_rest(sock: socket.socket) -> None:
        for _ in range(BIG // len(rest) - 1):
            sock.sendall(rest)
        time.sleep(0.2)

    status, body, elapsed = raw_exchange(srv, head(path, BIG, auth, ctype), rest, send_rest)
    assert status == 401, body
    assert elapsed < 5
    grown = process.memory_info().rss - before
    assert grown < BIG // 2, f"server grew by {grown} bytes"


def test_unknown_key_with_a_plain_client(srv):
    """A client that sends the whole body before reading (httpx) still gets the 401."""
    r = httpx.post(
        srv.url + "/v1/images/generations",
        content=b"\0" * (8 << 20),
        headers={"Authorization": "Bearer sk-nope", "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
