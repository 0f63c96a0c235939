"""Image URLs and webhook URLs are not a way into the operator's network: loopback and
other non-public addresses are refused in every spelling, after DNS and on every redirect,
with one answer whatever listens there; an allow-list opens chosen networks; a fetch has a
total deadline."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pixgate.processing import fetch
from pixgate.settings import load_settings
from tests.conftest import GENERATIONS, RunningServer, free_port, start_server
from tests.images import gradient_png

PNG = gradient_png(64, 64)
LOOPBACK = ["127.0.0.0/8"]


class ImageHost:
    """A loopback HTTP server: `/img.png` a PNG, `/to?port=P` a redirect to 127.0.0.1:P,
    `/page` HTML, `/drip` a PNG that arrives one byte every 0.1 s. Records each path."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.paths: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.paths.append(self.path)
                if self.path.startswith("/to?port="):
                    target = f"http://127.0.0.1:{self.path.split('=')[1]}/img.png"
                    self._answer(302, b"", [("Location", target)])
                elif self.path == "/img.png":
                    self._answer(200, PNG, [("Content-Type", "image/png")])
                elif self.path == "/page":
                    self._answer(200, b"<html>admin console</html>", [])
                elif self.path == "/drip":
                    self.send_response(200)
                    self.end_headers()
                    try:
                        for byte in PNG[:300]:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.1)
                    except OSError:
                        pass  # the client hung up: what the test wants
                else:
                    self._answer(404, b"not here", [])

            def _answer(self, status: int, body: bytes, headers: list) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((address, 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def images() -> Iterator[ImageHost]:
    host = ImageHost()
    yield host
    host.close()


@pytest.fixture(scope="module")
def other_host() -> Iterator[ImageHost]:
    """The same server on 127.0.0.2: a host an allow-list lets through while 127.0.0.1
    stays refused."""
    host = ImageHost("127.0.0.2")
    yield host
    host.close()


def _serve(tmp_path_factory, models_dir, **overrides) -> RunningServer:
    settings = load_settings(
        None,
        data_dir=tmp_path_factory.mktemp("data"),
        models_path=models_dir,
        port=free_port(),
        demo=True,
        log_level="WARNING",
        sweep_interval_seconds=3600,
        run_workers=False,  # the fetch happens at admission; nothing needs generating
        **overrides,
    )
    return start_server(settings)


@pytest.fixture(scope="module")
def strict(tmp_path_factory, models_dir) -> Iterator[RunningServer]:
    """Default settings, except that 127.0.0.2 is allowed (the first hop of a redirect)."""
    srv = _serve(tmp_path_factory, models_dir, fetch_image_allow=["127.0.0.2/32"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def allowing(tmp_path_factory, models_dir) -> Iterator[RunningServer]:
    srv = _serve(
        tmp_path_factory, models_dir, fetch_image_allow=LOOPBACK, fetch_image_timeout_seconds=1
    )
    yield srv
    srv.stop()


def closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


def own_host_name() -> str | None:
    """This machine's name when it resolves (through /etc/hosts or DNS, not spelled in the
    URL) to a non-public address: a name only the resolver can judge."""
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except OSError:
        return None
    addresses = {ipaddress.ip_address(i[4][0]) for i in infos}
    return name if addresses and not any(fetch.is_public(a) for a in addresses) else None


def loopback_urls(port: int) -> list[str]:
    urls = [
        f"http://{host}:{port}/img.png"
        for host in (
            "127.0.0.1",
            "localhost",
            "2130706433",  # decimal
            "0177.0.0.1",  # octal
            "0x7f.1",  # hex, short
            "127.1",  # short
            "[::1]",
            "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
            "[::ffff:7f00:1]",
        )
    ]
    if name := own_host_name():
        urls.append(f"http://{name}:{port}/img.png")
    return urls


def post_image(srv: RunningServer, url: str) -> httpx.Response:
    key = srv.create_key()
    body = {"model": "tiny-sd", "prompt": "x", "image": url, "size": "256x256", "async": True}
    with srv.client(key) as c:
        return c.post(GENERATIONS, json=body)


def refusal(r: httpx.Response) -> str:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "image" and error["code"] == "invalid_value"
    return error["message"]


def test_loopback_in_every_spelling_is_refused_alike_for_open_and_closed_ports(
    strict, images, other_host
):
    seen_before = list(images.paths)
    urls = loopback_urls(images.port) + loopback_urls(closed_port())
    # the first hop is allowed (127.0.0.2), the redirect to 127.0.0.1 is checked again
    urls.append(f"http://127.0.0.2:{other_host.port}/to?port={images.port}")
    messages = {url: refusal(post_image(strict, url)) for url in urls}
    assert len(set(messages.values())) == 1, messages
    text = next(iter(messages.values()))
    assert "public http(s) URL" in text
    for tell in ("refused", "timed out", "HTTP", "Connect", str(images.port)):
        assert tell not in text
    assert images.paths == seen_before  # nothing ever connected to 127.0.0.1
    assert other_host.paths[-1].startswith("/to?port=")  # the allowed first hop was made
    # the allowed host itself serves fine, redirecting to itself too
    assert post_image(strict, f"http://127.0.0.2:{other_host.port}/img.png").status_code == 202


def test_allow_list_opens_loopback_and_failures_there_read_alike(allowing, images):
    for url in loopback_urls(images.port):
        if "0177" in url or "[::1]" in url:  # httpx won't parse octal; ::1 is not allowed
            continue
        r = post_image(allowing, url)
        assert r.status_code == 202, (url, r.text)
    assert images.paths.count("/img.png") >= 8
    failures = [
        f"http://127.0.0.1:{closed_port()}/img.png",  # nothing listens
        f"http://127.0.0.1:{images.port}/missing.png",  # 404
        f"http://127.0.0.1:{images.port}/page",  # answers, but not with an image
        f"http://127.0.0.1:{images.port}/drip",  # too slow
    ]
    messages = {url: refusal(post_image(allowing, url)) for url in failures}
    assert len(set(messages.values())) == 1, messages


def test_a_slow_drip_is_cut_off_at_the_deadline(allowing, images):
    started = time.monotonic()
    refusal(post_image(allowing, f"http://127.0.0.1:{images.port}/drip"))
    assert time.monotonic() - started < 3  # deadline 1 s; the drip would take 30 s


def test_fetcher_returns_the_bytes_and_follows_redirects_it_may(images):
    policy = fetch.FetchPolicy(allow=fetch.parse_networks(LOOPBACK), deadline_seconds=5)
    got = asyncio.run(fetch.fetch_image(f"http://127.0.0.1:{images.port}/img.png", policy))
    assert got == PNG
    redirect = f"http://127.0.0.1:{images.port}/to?port={images.port}"
    assert asyncio.run(fetch.fetch_image(redirect, policy)) == PNG
    tight = fetch.FetchPolicy(allow=policy.allow, max_bytes=100)
    with pytest.raises(fetch.FetchRefused, match="100 bytes"):
        asyncio.run(fetch.fetch_image(f"http://127.0.0.1:{images.port}/img.png", tight))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fec0::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 wrapping 10.0.0.1
    ],
)
def test_non_public_addresses_are_not_public(address):
    assert not fetch.address_allowed(ipaddress.ip_address(address))


def test_public_addresses_and_allow_lists():
    assert fetch.address_allowed(ipaddress.ip_address("8.8.8.8"))
    assert fetch.address_allowed(ipaddress.ip_address("2606:4700:4700::1111"))
    private = fetch.parse_networks(["10.0.0.0/8"])
    assert fetch.address_allowed(ipaddress.ip_address("10.9.8.7"), private)
    assert fetch.address_allowed(ipaddress.ip_address("::ffff:10.9.8.7"), private)
    assert not fetch.address_allowed(ipaddress.ip_address("192.168.0.1"), private)
    spellings = ["2130706433", "0177.0.0.1", "0x7f.1", "127.1", "0x7f000001", "::ffff:7f00:1"]
    for spelling in spellings:
        assert fetch.literal_address(spelling) in (
            ipaddress.ip_address("127.0.0.1"),
            ipaddress.ip_address("::ffff:7f00:1"),
        ), spelling
    assert fetch.literal_address("example.com") is None


# --- webhooks --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def webhooks_allowed(tmp_path_factory, models_dir) -> Iterator[RunningServer]:
    srv = _serve(tmp_path_factory, models_dir, webhook_allow=LOOPBACK, webhook_poll_seconds=0.2)
    yield srv
    srv.stop()


def submit_with_webhook(srv: RunningServer, url: str) -> httpx.Response:
    with srv.client(srv.create_key()) as c:
        body = {"model": "tiny-sd", "prompt": "x", "size": "256x256", "webhook_url": url}
        return c.post(GENERATIONS, json=body)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "127.1", "2130706433", "[::1]", "[::ffff:127.0.0.1]"]
)
def test_webhook_to_loopback_refused_at_submit_unless_allowed(
    strict, webhooks_allowed, images, host
):
    url = f"http://{host}:{images.port}/hook"
    r = submit_with_webhook(strict, url)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "webhook_url"
    assert "public address" in r.json()["error"]["message"]
    if host != "[::1]":  # webhook_allow here is 127.0.0.0/8
        assert submit_with_webhook(webhooks_allowed, url).status_code == 202


def test_webhook_to_a_name_resolving_to_loopback_is_refused_at_delivery(strict):
    """A name is judged after DNS, when the delivery connects: the task is accepted, the
    receiver hears nothing, and the attempt says why."""
    name = own_host_name()
    if name is None:
        pytest.skip("this machine's name does not resolve to a non-public address")
    heard: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            heard.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    receiver = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        key = strict.create_key()
        with strict.client(key) as c:
            url = f"http://{name}:{receiver.server_address[1]}/hook"
            body = {"model": "tiny-sd", "prompt": "x", "size": "256x256", "webhook_url": url}
            r = c.post(GENERATIONS, json=body)
            assert r.status_code == 202, r.text
            task_id = r.json()["id"]
            assert c.post(f"/v1/tasks/{task_id}/cancel").status_code == 200  # finishes it
            deadline = time.monotonic() + 30
            while True:
                webhook = c.get(f"/v1/tasks/{task_id}").json()["webhook"]
                if webhook["attempts"] >= 1 and webhook["last_error"]:
                    break
                assert time.monotonic() < deadline, webhook
                time.sleep(0.05)
        assert "not a public address" in webhook["last_error"]
        assert heard == []
    finally:
        receiver.shutdown()
        receiver.server_close()
