"""The studio against a service that requires API keys, in headless Chromium.

A keyed application runs beside the main one on the session's Ray Serve, at ``/keyed``
(the studio works under any route prefix). The page asks for a key, says plainly when a
key is refused, keeps the accepted key for the tab only, and sends it on every request
and on the progress WebSocket.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serve_app.api.security import hash_key
from tests.browser.studio_page import SCREENSHOTS, Traffic, pixel_spread
from tests.serving import app_args, deploy

pytestmark = pytest.mark.browser

APP = "orfeas-keyed"
PREFIX = "/keyed"
KEY = "studio-key-7f3a9c"
JOB_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def base_url(ray_serve: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The keyed application's address (it replaces the main service for this module)."""
    from ray import serve

    args = app_args(tmp_path_factory.mktemp("keyed-storage"))
    args["registry"] = {"name": "job_registry_keyed"}
    args["security"] = {"api_key_hashes": [hash_key(KEY)]}
    deploy(args, name=APP, route_prefix=PREFIX)
    url = ray_serve + PREFIX
    try:
        assert httpx.get(f"{url}/api/jobs", timeout=30).status_code == 401
        yield url
    finally:
        serve.delete(APP)


def open_studio(page: Any, base_url: str) -> None:
    page.goto(base_url + "/")
    page.wait_for_selector("#key-dialog[open]")


def enter_key(page: Any, key: str) -> None:
    page.fill("#api-key", key)
    page.click("#key-submit")


def stored_key(page: Any) -> Any:
    return page.evaluate("sessionStorage.getItem('orfeas.apiKey')")


def test_the_studio_asks_for_a_key_and_refuses_a_wrong_one(page: Any, base_url: str) -> None:
    open_studio(page, base_url)
    assert page.inner_text("#key-reason") == "This server asks for an API key before it answers."

    with page.expect_response("**/api/jobs?limit=1") as answer:
        enter_key(page, "not-the-key")
    assert answer.value.status == 401
    message = page.locator("#key-message")
    message.wait_for(state="visible")
    assert message.inner_text() == (
        "That key was not accepted by this server. Check it and try again."
    )
    assert page.locator("#key-dialog").get_attribute("open") is not None
    assert stored_key(page) is None

    enter_key(page, KEY)
    page.wait_for_selector("#key-dialog", state="hidden")
    assert stored_key(page) == KEY
    assert page.evaluate("localStorage.length") == 0  # kept for this tab only
    assert page.is_visible("#key-status")
    page.wait_for_function(
        "!document.querySelector('[data-jobs-summary]').textContent.startsWith('Could not')"
    )


def test_a_refused_stored_key_is_named_and_forgotten(page: Any, base_url: str) -> None:
    page.goto(base_url + "/")
    page.evaluate("sessionStorage.setItem('orfeas.apiKey', 'a-key-that-was-revoked')")
    page.reload()
    page.wait_for_selector("#key-dialog[open]")
    assert page.inner_text("#key-reason") == (
        "The API key in use was not accepted by this server. Enter a valid key."
    )
    assert stored_key(page) is None


def test_with_the_right_key_a_photo_becomes_a_model_in_the_viewer(
    page: Any, base_url: str, photo_path: Path, traffic: Traffic
) -> None:
    open_studio(page, base_url)
    enter_key(page, KEY)
    page.wait_for_selector("#key-dialog", state="hidden")

    page.set_input_files("#photo-input", str(photo_path))
    page.wait_for_selector("#preview:not([hidden])")
    page.fill("#quality", "3")
    page.click("#generate-button")
    page.wait_for_function(
        "document.getElementById('progress').dataset.status === 'completed'",
        timeout=JOB_TIMEOUT_MS,
    )
    # The progress came over the WebSocket, which the service (keys required) let in: the
    # key went as a subprotocol token, answered with orfeas.v1, never in the URL.
    assert page.inner_text("#channel-text") == "Live updates: WebSocket"
    sockets = [url for url in traffic.urls if url.startswith("ws")]
    assert sockets and not any("api_key" in url or KEY in url for url in sockets), sockets

    page.wait_for_selector("#viewer[data-loaded]", timeout=60_000)
    page.wait_for_timeout(300)  # one more frame after the load
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    png = page.locator("#viewer canvas").screenshot(path=str(SCREENSHOTS / "keyed-viewer.png"))
    spread, covered = pixel_spread(png)
    assert spread > 12.0, f"the viewer looks blank (pixel std {spread:.1f})"
    assert covered > 0.03, f"the model covers {covered:.1%} of the viewer"

    with page.expect_download() as download_info:
        page.click(".downloads a[data-format='glb']")
    download = download_info.value
    assert download.suggested_filename.endswith(".glb"), download.suggested_filename
    assert Path(download.path()).read_bytes()[:4] == b"glTF"
    assert not traffic.page_errors, traffic.page_errors
