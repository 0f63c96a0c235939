"""The console in a real browser: Playwright drives Debian's chromium (headless, no
browser download) against a live server. Screenshots of each main page, in English and
Chinese and at phone width, go to $PIXGATE_SCREENSHOTS (else the test's tmp_path)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.conftest import INSTANT

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}
PAGES = ["/console/", "/console/keys", "/console/redeem", "/console/ledger", "/console/password"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("PIXGATE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()


def _name(path: str) -> str:
    return path.strip("/").replace("/", "-").replace("console", "").strip("-") or "dashboard"


def test_sign_up_create_a_key_switch_language_log_out(make_server, chromium, shots):
    server = make_server(models=[INSTANT], demo=False, free_grant="5")
    context = chromium.new_context(viewport=DESKTOP, locale="en-US")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto(f"{server.url}/console/signup")
    page.screenshot(path=shots / "en-signup.png", full_page=True)
    name = f"user{uuid.uuid4().hex[:8]}"
    page.get_by_label("User name").fill(name)
    page.get_by_label("Email").fill(f"{name}@example.com")
    page.get_by_label("Password").fill("correct horse 1")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(f"{server.url}/console/")
    assert page.locator("#free-grant").inner_text() == "5 CNY"
    assert page.locator("#balance").inner_text() == "5 CNY"

    page.get_by_role("navigation").get_by_role("link", name="API keys").click()
    page.get_by_label("Name", exact=True).fill("laptop")
    page.get_by_label("Image cap (optional)").fill("10")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text()
    assert key.startswith("sk-")
    page.get_by_role("button", name="Copy").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == key
    page.screenshot(path=shots / "en-keys-created.png", full_page=True)
    page.goto(f"{server.url}/console/keys")  # shown once: the page no longer has it
    assert page.locator("#new-key").count() == 0 and key not in page.content()

    for lang in ("en", "zh"):
        if lang == "zh":
            page.get_by_role("link", name="中文").click()
            assert page.get_by_role("navigation").get_by_role("link", name="API 密钥").is_visible()
        for path in PAGES:
            page.goto(f"{server.url}{path}")
            page.screenshot(path=shots / f"{lang}-{_name(path)}.png", full_page=True)
    page.goto(f"{server.url}/console/")
    assert page.get_by_text("余额").is_visible() and page.get_by_text("免费额度").is_visible()

    phone = context.new_page()
    phone.set_viewport_size(PHONE)
    for lang in ("zh", "en"):
        phone.goto(f"{server.url}/console/lang/{lang}?next=/console/")
        for path in PAGES:
            phone.goto(f"{server.url}{path}")
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} ({lang}) scrolls sideways: {width}px"
            phone.screenshot(path=shots / f"phone-{lang}-{_name(path)}.png", full_page=True)

    page.get_by_role("button", name="退出登录").click()
    page.wait_for_url(f"{server.url}/console/login")
    page.screenshot(path=shots / "zh-login.png", full_page=True)
    page.goto(f"{server.url}/console/")
    assert page.url == f"{server.url}/console/login"  # the session is gone
    assert errors == [], errors  # no CSP violations, script errors or missing files
    context.close()
