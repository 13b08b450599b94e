"""Headless Debian Chromium, driven by Playwright, against the running service.

The service is ``ORFEAS_BASE_URL`` (one already running) when set, else the session's
real local Ray Serve (the ``service`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.browser.studio_page import SCREENSHOTS, Traffic

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
STUDIO_HINT = "serve_app.api.create_api must call serve_app.web.install_web(app)"


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where set-up must have provided it."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per test module (Debian's; Playwright downloads no browser)."""
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing: `scripts/setup.sh chromium` installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: run `make setup`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def page(
    chromium: Any, base_url: str, traffic: Traffic, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """A fresh 1280x800 page; its traffic is recorded and a screenshot is saved at the end."""
    context = chromium.new_context(viewport=VIEWPORT, base_url=base_url, accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("request", lambda r: traffic.urls.append(r.url))
    page.on("websocket", lambda ws: traffic.urls.append(ws.url))
    page.on("console", lambda m: m.type == "error" and traffic.console_errors.append(m.text))
    page.on("pageerror", lambda e: traffic.page_errors.append(str(e)))
    try:
        yield page
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"))
        finally:
            context.close()


@pytest.fixture(scope="module")
def base_url(request: pytest.FixtureRequest) -> str:
    """The service's base URL, once it serves the studio page."""
    url = os.environ.get("ORFEAS_BASE_URL", "").rstrip("/")
    if not url:
        url = request.getfixturevalue("service").url
    response = httpx.get(f"{url}/", timeout=30.0)
    assert response.status_code == 200, f"{response.status_code}: {STUDIO_HINT}"
    return url


@pytest.fixture
def photo_path(tmp_path: Path) -> Path:
    """scikit-image's astronaut as a PNG whose bytes no other test uses (no cache hit)."""
    import skimage.data

    rgb = skimage.data.astronaut().copy()
    rng = np.random.default_rng(time.monotonic_ns() % (2**32))
    rgb[:4, :4] = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    path = tmp_path / "astronaut.png"
    Image.fromarray(rgb).save(path)
    return path
