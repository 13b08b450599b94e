"""The studio page and the API docs in headless Chromium, against the running service."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.browser.studio_page import SCREENSHOTS, Traffic, pixel_spread

pytestmark = pytest.mark.browser

JOB_TIMEOUT_MS = 180_000


def generate(page: Any, photo: Path, *, quality: int = 5) -> None:
    """Open the studio, pick ``photo`` and press Generate."""
    page.goto("/")
    page.set_input_files("#photo-input", str(photo))
    page.wait_for_selector("#preview:not([hidden])")
    page.fill("#quality", str(quality))
    page.click("#generate-button")


def wait_until_done(page: Any) -> None:
    page.wait_for_function(
        "document.getElementById('progress').dataset.status === 'completed'",
        timeout=JOB_TIMEOUT_MS,
    )


def test_studio_generates_and_shows_the_model(page: Any, photo_path: Path) -> None:
    generate(page, photo_path)
    page.wait_for_function(
        "['queued', 'running'].includes(document.getElementById('progress').dataset.status)"
    )
    wait_until_done(page)
    assert page.inner_text("#percent-text") == "100 %"
    assert page.get_attribute("#progress-bar", "aria-valuenow") == "100"
    assert page.inner_text("#status-text").startswith("Done")

    page.wait_for_selector("#viewer[data-loaded]", timeout=60_000)
    page.wait_for_timeout(300)  # one more frame after the load
    canvas = page.locator("#viewer canvas")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    png = canvas.screenshot(path=str(SCREENSHOTS / "viewer-canvas.png"))
    spread, covered = pixel_spread(png)
    assert spread > 12.0, f"the viewer looks blank (pixel std {spread:.1f})"
    assert covered > 0.03, f"the model covers {covered:.1%} of the viewer"

    with page.expect_download() as download_info:
        page.click(".downloads a[data-format='glb']")
    body = Path(download_info.value.path()).read_bytes()
    assert body[:4] == b"glTF", body[:16]
    # The printing and AR formats from the same row: zip packages with their own parts.
    for fmt, first in (("3mf", "[Content_Types].xml"), ("usdz", "model.usdc")):
        with page.expect_download() as download_info:
            page.click(f".downloads a[data-format='{fmt}']")
        download = download_info.value
        assert download.suggested_filename.endswith(f"_model.{fmt}")
        with zipfile.ZipFile(download.path()) as package:
            assert package.namelist()[0] == first


def test_no_request_leaves_the_service(
    page: Any, photo_path: Path, base_url: str, traffic: Traffic
) -> None:
    generate(page, photo_path, quality=1)
    wait_until_done(page)
    page.wait_for_selector("#viewer[data-loaded]", timeout=60_000)
    page.goto("/api/docs")
    page.wait_for_selector(".opblock-summary-path")

    assert any(url.endswith("/vendor/three/build/three.module.js") for url in traffic.urls)
    origin = re.sub(r"^http", "ws", base_url)
    outside = [
        url
        for url in traffic.urls
        if not url.startswith("data:")
        and not url.removeprefix("blob:").startswith((base_url + "/", origin + "/"))
    ]
    assert not outside, f"requests left {base_url}: {outside}"
    assert not traffic.page_errors, traffic.page_errors


def test_the_studio_offers_the_enabled_generators_and_sends_the_choice(
    page: Any, photo_path: Path
) -> None:
    page.goto("/")
    page.wait_for_selector("#generator option[value='inflate']", state="attached")
    options = page.eval_on_selector_all(
        "#generator option", "options => options.map(o => [o.value, o.textContent, o.selected])"
    )
    assert options == [["inflate", "inflate (default)", True]]  # the service enables inflate
    assert page.inner_text("#generator-hint").startswith("silhouette inflation")
    assert page.is_hidden("#seed-field")  # inflate takes no seed

    page.set_input_files("#photo-input", str(photo_path))
    page.wait_for_selector("#preview:not([hidden])")
    page.fill("#quality", "1")
    with page.expect_request("**/api/generate-3d") as sent:
        page.click("#generate-button")
    body = sent.value.post_data_json
    assert body["generator"] == "inflate" and "seed" not in body
    wait_until_done(page)
    assert page.inner_text("#job-label").endswith("(inflate, closed mesh)")
    page.wait_for_selector(".job-meta:has-text('inflate')")


def test_cancel_from_the_page(page: Any, photo_path: Path) -> None:
    generate(page, photo_path, quality=10)
    with page.expect_response(re.compile(r"/api/jobs/[0-9a-f]{32}/cancel$")) as answer:
        page.click("#cancel-button")
    response = answer.value
    assert response.ok, response.text()
    page.wait_for_function(
        "document.getElementById('progress').dataset.status === 'cancelled'", timeout=60_000
    )
    assert page.inner_text("#status-text") == "Cancelled."
    page.wait_for_selector("#message:has-text('cancelled')")
    assert page.is_disabled("#cancel-button")
    assert page.is_enabled("#generate-button")


def test_upload_error_is_shown_in_words(page: Any, tmp_path: Path) -> None:
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_text("this is not an image")
    page.goto("/")
    page.set_input_files("#photo-input", str(not_a_photo))
    page.click("#generate-button")
    message = page.locator("#message")
    message.wait_for(state="visible")
    text = message.inner_text()
    assert text.startswith("Could not start the generation: "), text
    assert "{" not in text and "Traceback" not in text
    assert page.is_enabled("#generate-button")


def test_text_to_image_says_when_it_is_not_configured(page: Any) -> None:
    page.goto("/")
    page.fill("#prompt", "a ceramic owl on a white table")
    with page.expect_response("**/api/text-to-image") as answer:
        page.click("#prompt-button")
    response = answer.value
    assert response.status == 503, response.text()
    error = response.json()["error"]
    assert error["code"] == "model_not_configured"
    message = page.locator("#message")
    message.wait_for(state="visible")
    text = message.inner_text()
    assert text.startswith("Text-to-image is not configured on this server"), text
    assert error["message"] in text


def test_api_docs_render_the_operations(page: Any) -> None:
    page.goto("/api/docs")
    paths = page.locator(".opblock-summary-path")
    paths.first.wait_for()
    shown = set(paths.all_inner_texts())
    for path in ("/api/upload-image", "/api/generate-3d", "/api/job-status/", "/download/"):
        assert any(text.replace("\u200b", "").startswith(path) for text in shown), (path, shown)
