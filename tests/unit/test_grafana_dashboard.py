"""configs/grafana-dashboard.json: what it asks Prometheus, read without a Prometheus.

Which series exist is checked against the running service in
tests/integration/test_prometheus.py; here, how the dashboard combines its two sources.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "configs" / "grafana-dashboard.json"


def load() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def test_the_scrape_job_variable_picks_one_source_at_a_time() -> None:
    """Ray's endpoint and the service's /metrics carry the same counts under two names;
    a selection of both would add them up twice in every sum.
    """
    (job,) = [v for v in load()["templating"]["list"] if v["name"] == "job"]
    assert job["includeAll"] is False and job["multi"] is False
    assert job["current"]["value"] == "orfeas"


def test_every_panel_reads_one_scrape_job_or_only_ray_series() -> None:
    for expression in expressions(load()):
        if 'job=~"$job"' not in expression:
            # Series only Ray's endpoint has are not filtered by the scrape job.
            assert "(ray_)?" not in expression and "ray_orfeas_" in expression, expression
