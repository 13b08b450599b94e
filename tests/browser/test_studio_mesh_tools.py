"""The studio's mesh tools, batches and thumbnails in headless Chromium, against the service."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

JOB_TIMEOUT_MS = 180_000


def unique_photo(tmp_path: Path, name: str, size: int = 200) -> Path:
    """A scikit-image photo, ``size`` px wide, whose bytes no other test uses."""
    import skimage.data

    image = Image.fromarray(np.ascontiguousarray(getattr(skimage.data, name)()[..., :3]))
    image = image.resize((size, max(16, round(size * image.height / image.width))))
    rgb = np.asarray(image).copy()
    rng = np.random.default_rng(time.monotonic_ns() % (2**32))
    rgb[:4, :4] = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    path = tmp_path / f"{name}.png"
    Image.fromarray(rgb).save(path)
    return path


def test_the_mesh_tools_analyse_optimize_apply_a_material_and_preview(
    page: Any, tmp_path: Path
) -> None:
    page.goto("/")
    page.set_input_files("#photo-input", str(unique_photo(tmp_path, "coffee")))
    page.wait_for_selector("#preview:not([hidden])")
    page.fill("#quality", "1")
    page.click("#generate-button")
    page.wait_for_function(
        "document.getElementById('progress').dataset.status === 'completed'",
        timeout=JOB_TIMEOUT_MS,
    )
    page.wait_for_selector("#tools:not([hidden])")
    job_id = page.inner_text("#job-label").split()[1]

    page.click("#analyze-button")
    page.wait_for_selector("#analysis:not([hidden])")
    rows = dict(
        page.eval_on_selector_all(
            "#analysis tr",
            "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])",
        )
    )
    assert rows["Closed"] == "yes" and rows["Printable"] == "yes", rows
    assert int(rows["Triangles"].replace(",", "")) > 500

    page.fill("#target-faces", "500")
    with page.expect_response("**/api/optimize-mesh") as answer:
        page.click("#optimize-button")
    made = answer.value.json()
    assert answer.value.ok and made["faces"] <= 500
    page.wait_for_function(f"document.getElementById('version').value === '{made['variant_id']}'")
    assert page.inner_text("#version option:checked").startswith("Optimized:")
    href = page.get_attribute(".downloads a[data-format='stl']", "href")
    assert href == f"download/{job_id}/stl?variant={made['variant_id']}"
    page.wait_for_selector(f"#viewer[data-loaded='{job_id}:{made['variant_id']}']", timeout=60_000)

    page.click("#analyze-button")
    page.wait_for_function(
        "[...document.querySelectorAll('#analysis th')].some(th => th.textContent === 'Triangles')"
        " && document.querySelector('#analysis tbody td').textContent"
        f" === '{made['faces']}'"
    )

    page.wait_for_selector("#material option[value='metal']", state="attached")
    page.select_option("#material", "metal")
    with page.expect_response("**/api/apply-material") as answer:
        page.click("#material-button")
    metal = answer.value.json()
    assert metal["base"] == made["variant_id"] and metal["params"]["name"] == "metal"
    page.wait_for_function(f"document.getElementById('version').value === '{metal['variant_id']}'")
    assert page.locator("#version option").count() == 3  # the model and two versions

    page.select_option("#material", "custom")
    assert page.is_visible("#custom-material")

    with page.expect_response("**/api/preview-3d") as answer:
        page.click("#preview-button")
    assert answer.value.ok and answer.value.headers["content-type"] == "image/png"
    page.wait_for_selector("#preview-image:not([hidden])")
    page.wait_for_function("document.getElementById('preview-image').naturalWidth === 384")

    page.select_option("#version", "")
    href = page.get_attribute(".downloads a[data-format='glb']", "href")
    assert href == f"download/{job_id}/glb"

    thumb = page.locator(f".job[data-job-id='{job_id}'] img.thumb")
    thumb.wait_for()
    page.wait_for_function(
        f"document.querySelector(\".job[data-job-id='{job_id}'] img.thumb\").naturalWidth === 256",
        timeout=60_000,
    )


def test_several_photos_at_once_run_as_a_batch(page: Any, tmp_path: Path) -> None:
    photos = [unique_photo(tmp_path, n, size=128) for n in ("chelsea", "astronaut", "rocket")]
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_text("this is not an image")
    page.goto("/")
    page.set_input_files("#photo-input", [str(p) for p in [*photos, not_a_photo]])
    assert page.inner_text("#generate-button") == "Generate 4"
    page.fill("#quality", "1")
    with page.expect_response("**/api/batch-generate") as answer:
        page.click("#generate-button")
    created = answer.value.json()
    assert answer.value.status == 202 and len(created["jobs"]) == 4
    page.wait_for_selector("#batch:not([hidden])")
    page.wait_for_selector("#message:has-text('1 of the photos were not started')")
    page.wait_for_function(
        "document.getElementById('batch').dataset.status === 'partial'", timeout=JOB_TIMEOUT_MS
    )
    statuses = page.eval_on_selector_all(".batch-job", "items => items.map(i => i.dataset.status)")
    assert statuses == ["completed", "completed", "completed", "rejected"]
    assert re.search(r"3 completed, 1 rejected", page.inner_text("#batch-summary"))
    assert page.is_enabled("#generate-button")

    page.click(".batch-job >> nth=0 >> button")
    page.wait_for_selector("#tools:not([hidden])")
    first = created["jobs"][0]["job_id"]
    assert page.inner_text("#job-label").startswith(f"Job {first}")
