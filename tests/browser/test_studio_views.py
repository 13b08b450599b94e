"""The studio's add-a-view flow in headless Chromium: photos of the same object from other
sides are added to the photo, listed, removed, uploaded with it, and listed by the job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.browser.test_studio import wait_until_done
from tests.support import photo

pytestmark = pytest.mark.browser


def side_photo(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / f"{name}.png"
    Image.fromarray(photo(source)[:240, :320]).save(path)
    return path


def test_views_are_added_listed_removed_and_uploaded_with_the_photo(
    page: Any, photo_path: Path, tmp_path: Path, base_url: str
) -> None:
    page.goto("/")
    assert page.is_hidden("#views-panel")  # no photo yet
    page.set_input_files("#photo-input", str(photo_path))
    page.wait_for_selector("#views-panel:not([hidden])")

    page.select_option("#view-name", "back")
    page.set_input_files("#view-input", str(side_photo(tmp_path, "rear", "rocket")))
    page.wait_for_selector("#view-list li[data-view='back']")
    assert page.inner_text("#view-list li[data-view='back']").startswith("back: rear.png")
    assert page.is_disabled("#view-name option[value='back']")  # one photo per side

    page.select_option("#view-name", "left")
    page.set_input_files("#view-input", str(side_photo(tmp_path, "side", "coffee")))
    page.wait_for_selector("#view-list li[data-view='left']")
    page.click("button[aria-label='Remove the back photo']")
    page.wait_for_selector("#view-list li[data-view='back']", state="detached")
    assert page.is_enabled("#view-name option[value='back']")

    page.fill("#quality", "1")
    with page.expect_response("**/api/upload-image") as answer:
        page.click("#generate-button")
    uploaded = answer.value.json()  # the back photo was removed: it is not sent
    assert [v["view"] for v in uploaded["views"]] == ["front", "left"]
    wait_until_done(page)
    job_id = uploaded["job_id"]
    job = httpx.get(f"{base_url}/api/job-status/{job_id}").json()
    assert [v["view"] for v in job["views"]] == ["front", "left"]


def test_a_view_that_is_not_a_photo_is_refused_in_words(
    page: Any, photo_path: Path, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    page.goto("/")
    page.set_input_files("#photo-input", str(photo_path))
    page.wait_for_selector("#views-panel:not([hidden])")
    page.set_input_files("#view-input", str(notes))
    page.wait_for_selector("#message:has-text('is not a PNG, JPEG or WebP photo')")
    assert page.locator("#view-list li").count() == 0
