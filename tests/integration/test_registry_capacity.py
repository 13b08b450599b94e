"""The registry under a simulated cluster (tests/registry_sim.py, swept by bench/registry.py):
32 heartbeating workers fed for 10 s lose no run and expire no live worker's lease."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.registry_sim import Setting, SimCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_registry_carries_32_workers_without_losing_a_run(ray_serve: str, tmp_path: Path) -> None:
    # 8 submits/s of 3.6 s jobs keep about 29 of the 32 workers beating every 0.25 s.
    setting = Setting(workers=32, rate=8.0, job_s=3.6, measure_s=10.0)
    cluster = SimCluster()
    try:
        figures = cluster.run(setting, tmp_path)
    finally:
        cluster.close()

    assert figures.refused == 0
    assert figures.accepted == 80
    assert figures.lost == 0, "every accepted run completed once the fleet drained"
    assert figures.expired == 0, "no lease expired and no run was retried while its worker beat"
    assert figures.beat.count > 0 and figures.submit.count > 0
    assert figures.views_agree, "every ingress view ended with every job's final status"
