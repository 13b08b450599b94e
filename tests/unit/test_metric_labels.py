"""The generator-labelled counters are zero for every known label before their first event."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve_app.metrics import GENERATOR_COUNTERS, JOBS_SUBMITTED, ServiceMetrics
from tests.unit.inprocess import app_config, in_process_service


def test_a_fresh_service_shows_zero_for_each_generator_counter(tmp_path: Path) -> None:
    with in_process_service(app_config(tmp_path)) as service:
        reply = service.http.get("/metrics")
    assert reply.status_code == 200
    text = reply.text
    for spec in GENERATOR_COUNTERS:
        assert f'{spec.name}_total{{generator="inflate"}} 0.0' in text, spec.name
    assert 'generator="hunyuan3d"' not in text  # not enabled
    assert 'generator="text_to_image"' not in text  # no text-to-image model


def test_a_declared_series_counts_on_from_zero_and_keeps_its_count() -> None:
    metrics = ServiceMetrics()
    metrics.declare(JOBS_SUBMITTED, "inflate")
    metrics.inc(JOBS_SUBMITTED, "inflate")
    metrics.declare(JOBS_SUBMITTED, "inflate")  # a redeploy declares again
    assert metrics.snapshot().values[JOBS_SUBMITTED.name] == {("inflate",): 1.0}
    with pytest.raises(ValueError, match="takes labels"):
        metrics.declare(JOBS_SUBMITTED)
