"""Every image file pixgate serves carries a valid TC260 label (aigc_label, on by
default): generated in each output format, relayed from an upstream, and a marked copy;
with aigc_label off there is none."""

from __future__ import annotations

import base64

import pytest

from pixgate.processing.label import inspect_file, label_key
from tests.conftest import INSTANT
from tests.relay_servers import relayed
from tests.upstreams import FakeUpstream

GENERATIONS = "/v1/images/generations"


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream("openai", "url") as up:
        yield up


@pytest.fixture(scope="module")
def server(make_module_server, upstream):
    return make_module_server(
        models=[INSTANT, relayed("relayed", "up")],
        channels=[upstream.channel("up")],
        demo=False,
        aigc_producer="TEST-PRODUCER-01",
    )


def key_of(server) -> bytes:
    return label_key(server.core._server_secret)


def files(server, key: str, **body) -> list[bytes]:
    with server.client(key) as c:
        r = c.post(GENERATIONS, json={"prompt": "a lighthouse", **body})
        assert r.status_code == 200, r.text
        return [base64.b64decode(d["b64_json"]) for d in r.json()["data"]]


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_generated_images_carry_a_valid_label_in_each_format(server, fmt):
    key = server.create_key(credit="5")
    data = files(server, key, model="instant", n=2, output_format=fmt, response_format="b64_json")
    for i, file in enumerate(data):
        seen = inspect_file(file, key_of(server))
        assert seen.verdict == "valid", seen.reason
        assert seen.label["ContentProducer"] == "TEST-PRODUCER-01"
        assert seen.label["ProduceID"].endswith(f"-{i}")
    assert inspect_file(data[0], b"some other server").verdict == "invalid"


def test_relayed_images_are_relabelled_by_pixgate(server, upstream):
    key = server.create_key(credit="5")
    (file,) = files(server, key, model="relayed", response_format="b64_json")
    assert upstream.downloads  # the upstream's URL was fetched and the image re-hosted
    assert inspect_file(file, key_of(server)).verdict == "valid"


def test_no_label_when_turned_off(make_server):
    server = make_server(models=[INSTANT], demo=False, aigc_label=False)
    key = server.create_key(credit="5")
    (file,) = files(server, key, model="instant", response_format="b64_json")
    assert inspect_file(file, key_of(server)).verdict == "absent"
