"""Every image file pixgate serves carries a valid TC260 label (aigc_label, on by
default): generated in each output format, relayed from an upstream, and a marked copy;
with aigc_label off there is none."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from pixgate.processing.encode import encode_image
from pixgate.processing.label import embed_xmp, inspect_file, label_key, read_label, xmp_packet
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


def tampered(png: bytes) -> bytes:
    """The same label on the same image with one pixel changed."""
    with Image.open(io.BytesIO(png)) as opened:
        opened.load()
        label = read_label(opened)
        image = opened.convert("RGB")
    image.putpixel(
        (0, 0), (255, 255, 255) if image.getpixel((0, 0)) != (255, 255, 255) else (0, 0, 0)
    )
    return embed_xmp(encode_image(image, "png"), "png", xmp_packet(label))


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


def test_the_inspect_endpoint_and_command_verify_labels(server, tmp_path):
    import subprocess
    import sys

    key = server.create_key(credit="5")
    (good,) = files(server, key, model="instant", response_format="b64_json")
    with server.client(key) as c:
        verdicts = [
            c.post("/v1/images/inspect", files={"file": ("a.png", data, "image/png")}).json()
            for data in (good, tampered(good), b"no image")
        ]
        missing = c.post("/v1/images/inspect", files={"other": ("a.png", good, "image/png")})
    assert verdicts[0]["verdict"] == "valid" and verdicts[0]["label"]["Label"] == "1"
    assert [v["verdict"] for v in verdicts[1:]] == ["invalid", "absent"]
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
    (tmp_path / "good.png").write_bytes(good)
    (tmp_path / "plain.png").write_bytes(b"not an image")
    cli = [sys.executable, "-m", "pixgate", "inspect", "--data-dir", str(server.settings.data_dir)]
    ok = subprocess.run([*cli, str(tmp_path / "good.png")], capture_output=True, text=True)
    assert ok.returncode == 0 and "valid" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run(
        [*cli, "--json", str(tmp_path / "good.png"), str(tmp_path / "plain.png")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert [
        json_line["verdict"] for json_line in map(__import__("json").loads, bad.stdout.splitlines())
    ] == [
        "valid",
        "absent",
    ]
    elsewhere = subprocess.run(
        [sys.executable, "-m", "pixgate", "inspect", "--data-dir", str(tmp_path / "empty"),
         str(tmp_path / "good.png")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert elsewhere.returncode == 2 and "no signing secret" in elsewhere.stderr
