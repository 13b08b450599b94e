"""Headless Debian Chromium, driven by Playwright, against the running service.

The service is, in order of preference: ``ORFEAS_BASE_URL`` (one already running), the
session's ``service`` fixture when a parent conftest provides one, or a local Ray Serve
started for the test module (the same small graph as tests/integration) and shut down
before the next module runs, so that it never meets another module's Ray.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.browser.studio_page import REPO_ROOT, SCREENSHOTS, Traffic

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
def base_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The service's base URL, once it serves the studio page."""
    url = os.environ.get("ORFEAS_BASE_URL", "").rstrip("/")
    if url:
        yield _serving_studio(url)
        return
    try:
        service = request.getfixturevalue("service")
    except pytest.FixtureLookupError:
        with _local_service(tmp_path_factory.mktemp("browser-storage")) as url:
            yield _serving_studio(url)
        return
    yield _serving_studio(service.url)


def _serving_studio(url: str) -> str:
    response = httpx.get(f"{url}/", timeout=30.0)
    assert response.status_code == 200, f"{response.status_code}: {STUDIO_HINT}"
    return url


def _models_dir() -> Path:
    for candidate in (REPO_ROOT / "models", Path("/tmp/models")):
        if (candidate / "u2netp.onnx").is_file():
            return candidate
    pytest.fail(f"{REPO_ROOT / 'models' / 'u2netp.onnx'} is missing: run `make setup`")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _local_service(storage_root: Path) -> Iterator[str]:
    """The application on a local Ray Serve, sized for a 2-core box (as tests/integration)."""
    import ray
    from ray import serve

    from serve_app.app import build_app
    from serve_app.config import AppConfig

    small = {"num_replicas": 1, "num_cpus": 0.25}
    config = AppConfig.model_validate(
        {
            "storage": {"root": str(storage_root)},
            "pipeline": {"models_dir": str(_models_dir()), "device": "cpu"},
            "ingress": {**small, "max_ongoing_requests": 200},
            "background_removal": {**small, "max_ongoing_requests": 2},
            "shape_texture": {**small, "max_ongoing_requests": 1},
        }
    )
    if ray.is_initialized():
        pytest.fail(
            "Ray already runs in this test process (another directory's service fixture): "
            "provide one session-wide `service` fixture in tests/conftest.py to share it"
        )
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
    )
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(config), name="orfeas", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


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
