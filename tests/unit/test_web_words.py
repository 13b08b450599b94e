"""The studio's words for a job (static/js/text.js), run in Node as the browser runs them."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from serve_app.web.routes import STATIC_DIR

TEXT_JS = (STATIC_DIR / "js" / "text.js").as_uri()


def studio_words(jobs: list[dict[str, object]]) -> list[list[str]]:
    """[statusText(job), etaText(job), badgeText(job)] of each job, from the page's own
    module."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run `make setup`")
    script = (
        f"import {{ badgeText, etaText, statusText }} from {json.dumps(TEXT_JS)};\n"
        "const jobs = JSON.parse(process.argv[1]);\n"
        "const words = jobs.map((j) => [statusText(j), etaText(j), badgeText(j)]);\n"
        "console.log(JSON.stringify(words));\n"
    )
    done = subprocess.run(
        [node, "--input-type=module", "-e", script, json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_a_queued_job_says_how_many_are_ahead_in_its_status_badge_and_eta() -> None:
    words = studio_words(
        [
            {"status": "queued", "queue_position": 4, "eta_seconds": 150},
            {"status": "queued", "queue_position": 1, "eta_seconds": 12},
            {"status": "queued", "queue_position": None, "eta_seconds": None},
            {"status": "running", "stage": "shape_generation", "eta_seconds": 12, "progress": 41.6},
        ]
    )
    assert words == [
        ["Queued, 3 ahead.", "About 3 min left, the wait included", "queued, 3 ahead"],
        ["Queued, next to start.", "About 12 s left, the wait included", "queued, next"],
        ["Queued: waiting for a worker…", "", "queued"],
        ["Building the shape…", "About 12 s left", "running 42 %"],
    ]
