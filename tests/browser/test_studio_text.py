"""The studio's prompt box in headless Chromium, against the application with the tiny
text-to-image model (``text_service``, at ``/text``): a prompt to a picture and then a model,
or straight to a model; a refused prompt or picture is said in words.

The tiny model's pictures are noise with some structure: background removal may find no
subject in one, and then the page must say so (the stage and the code), not hang.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.studio_page import Traffic
from tests.client import Service

pytestmark = pytest.mark.browser

JOB_TIMEOUT_MS = 180_000
ENDED = "['completed', 'failed'].includes(document.getElementById('progress').dataset.status)"
REFUSAL = re.compile(
    r"^Generation failed while (removing the background|building the shape) "
    r"\((no_subject|no_surface)\): \S"
)


@pytest.fixture(scope="module")
def base_url(text_service: Service) -> str:
    """The text application's address (the ``page`` fixture's base)."""
    import httpx

    response = httpx.get(f"{text_service.url}/", timeout=30.0)
    assert response.status_code == 200, response.text
    return text_service.url


def open_studio(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/")
    page.wait_for_selector("#generator option[value='inflate']", state="attached")
    page.fill("#quality", "1")


def assert_model_or_refusal(page: Any) -> str:
    """The model in the viewer, or a message naming the stage that refused the picture."""
    page.wait_for_function(ENDED, timeout=JOB_TIMEOUT_MS)
    status = page.get_attribute("#progress", "data-status")
    if status == "completed":
        page.wait_for_selector("#viewer[data-loaded]", timeout=60_000)
        assert page.inner_text("#percent-text") == "100 %"
        assert page.is_visible("#viewer canvas")
    else:
        message = page.locator("#message")
        message.wait_for(state="visible")
        text = message.inner_text()
        assert REFUSAL.match(text), text
        assert "{" not in text and "Traceback" not in text
    assert page.is_enabled("#generate-button") and page.is_enabled("#prompt-button")
    return str(status)


def picture_size(page: Any) -> tuple[int, int]:
    page.wait_for_function(
        "(() => { const i = document.getElementById('preview');"
        " return !i.hidden && i.complete && i.naturalWidth > 0; })()",
        timeout=JOB_TIMEOUT_MS,
    )
    width, height = page.eval_on_selector("#preview", "i => [i.naturalWidth, i.naturalHeight]")
    return int(width), int(height)


def test_the_prompt_box_makes_a_picture_then_a_model_of_it(
    page: Any, base_url: str, traffic: Traffic
) -> None:
    open_studio(page, base_url)
    page.fill("#prompt", "a ceramic owl on a white table")
    with page.expect_response("**/api/text-to-image") as answer:
        page.click("#prompt-button")
    assert answer.value.status == 202, answer.value.text()
    job_id = answer.value.json()["job_id"]
    assert "generate_3d" not in answer.value.request.post_data_json

    page.wait_for_function(
        "document.getElementById('progress').dataset.status === 'completed'",
        timeout=JOB_TIMEOUT_MS,
    )
    assert page.inner_text("#status-text").startswith("Picture ready")
    assert picture_size(page) == (64, 64)  # the tiny model's native size
    assert page.is_visible("#make-3d-button")
    assert page.inner_text("#message").startswith("The picture is ready")
    assert page.is_hidden("#viewer canvas") or not page.get_attribute("#viewer", "data-loaded")

    with page.expect_request("**/api/generate-3d") as sent:
        page.click("#make-3d-button")
    assert sent.value.post_data_json["job_id"] == job_id
    assert sent.value.post_data_json["quality"] == 1
    assert_model_or_refusal(page)
    assert page.inner_text("#job-label").startswith(f"Job {job_id}")
    assert any(url.endswith(f"/api/jobs/{job_id}/image") for url in traffic.urls)
    assert not traffic.page_errors, traffic.page_errors
    # e.g. no thumbnail is asked of a job that has only its picture (that would be a 409)
    assert not traffic.console_errors, traffic.console_errors


def test_the_prompt_box_goes_straight_to_a_model(page: Any, base_url: str) -> None:
    open_studio(page, base_url)
    page.fill("#prompt", "a small wooden toy car")
    page.fill("#width", "80")
    with page.expect_request("**/api/text-to-image") as sent:
        page.click("#prompt-3d-button")
    body = sent.value.post_data_json
    assert body["prompt"] == "a small wooden toy car"
    assert body["generate_3d"]["quality"] == 1 and body["generate_3d"]["dimensions"]["width"] == 80
    assert body["generate_3d"]["generator"] == "inflate"
    assert_model_or_refusal(page)
    assert picture_size(page) == (64, 64)  # the picture is shown whatever the model's fate
    assert page.is_hidden("#make-3d-button")


def test_a_refused_prompt_is_said_in_words(page: Any, base_url: str) -> None:
    open_studio(page, base_url)
    page.fill("#prompt", "a mug\u0007 with a bell")
    with page.expect_response("**/api/text-to-image") as answer:
        page.click("#prompt-button")
    assert answer.value.status == 422
    message = page.locator("#message")
    message.wait_for(state="visible")
    text = message.inner_text()
    assert text.startswith("The prompt or its options were refused: prompt: "), text
    assert "U+0007" in text and "bell" not in text
    assert page.is_enabled("#prompt-button") and page.is_enabled("#prompt-3d-button")
