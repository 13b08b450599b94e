"""Workers die mid-job: the registry notices, retries the run once, then fails it clearly."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fault.harness import (
    FaultService,
    generate,
    kill_replica,
    photo,
    replica_names,
    status,
    upload,
    wait_for,
    wait_ready,
    wait_terminal,
)

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.timeout(240)]

#: The issue's bound: a lost worker is noticed (and the job retried or failed) within 30 s.
NOTICE_S = 30.0


def in_shape_stage(job: dict[str, object]) -> bool:
    return job["status"] == "running" and job["stage"] in ("shape_generation", "texture_synthesis")


def test_a_lost_shape_worker_is_retried_once_then_the_job_fails_clearly(
    fault_service: FaultService, admin: httpx.Client
) -> None:
    wait_ready(admin)
    job_id = upload(admin, photo(320))
    assert generate(admin, job_id, format="glb", quality=10).status_code == 202

    first = wait_for(admin, job_id, in_shape_stage, 60, "run 1 in the shape stage")
    assert first["run"] == 1
    kill_replica(fault_service.app, "ShapeTexture")
    killed_at = time.monotonic()
    retried = wait_for(admin, job_id, lambda j: j["run"] == 2, NOTICE_S, "a retry as run 2")
    assert retried["status"] in ("queued", "running"), retried
    assert time.monotonic() - killed_at < NOTICE_S

    # The retry waits for Serve's replacement replica, then runs; lose that one too.
    wait_for(admin, job_id, in_shape_stage, 120, "run 2 in the shape stage")
    kill_replica(fault_service.app, "ShapeTexture")
    job = wait_terminal(admin, job_id, NOTICE_S)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "model_unavailable", job
    assert job["error"]["retryable"] is True
    assert "Traceback" not in str(job["error"])

    # The service heals: the same job runs again once a replica is back.
    wait_ready(admin)
    assert generate(admin, job_id, format="stl", quality=1).status_code == 202
    assert wait_terminal(admin, job_id, 120)["status"] == "completed"


def test_a_lost_background_worker_is_retried_and_every_job_completes(
    fault_service: FaultService, admin: httpx.Client, clients: list[httpx.Client]
) -> None:
    wait_ready(admin)
    jobs = [upload(client, photo(480)) for client in clients]
    for client, job_id in zip(clients, jobs, strict=True):
        assert generate(client, job_id, format="stl", quality=1).status_code == 202
    wait_for(
        admin,
        jobs[0],
        lambda j: j["stage"] == "background_removal",
        60,
        "background removal under way",
    )
    kill_replica(fault_service.app, "BackgroundRemoval")
    ends = [wait_terminal(admin, job_id, 150) for job_id in jobs]
    outcome = [(j["status"], j["run"], j["error"]) for j in ends]
    assert [j["status"] for j in ends] == ["completed"] * 4, outcome
    assert max(j["run"] for j in ends) == 2, "no run was in flight on the killed replica"
    assert all(status(admin, j) is not None for j in jobs)


def replica_pid(app: str, deployment: str) -> int:
    import os

    import ray

    (name,) = replica_names(app, deployment)
    actor = ray.get_actor(name, namespace="serve")
    return int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30))


def test_a_frozen_worker_loses_its_lease_and_its_late_reports_are_ignored(
    fault_service: FaultService, admin: httpx.Client
) -> None:
    import os
    import signal

    wait_ready(admin)
    pid = replica_pid(fault_service.app, "ShapeTexture")
    job_id = upload(admin, photo(320))
    assert generate(admin, job_id, format="glb", quality=10).status_code == 202
    wait_for(admin, job_id, in_shape_stage, 60, "run 1 in the shape stage")
    os.kill(pid, signal.SIGSTOP)  # alive to Ray, silent to the registry
    try:
        frozen_at = time.monotonic()
        lease_s = fault_service.args["registry"]["lease_s"]
        wait_for(admin, job_id, lambda j: j["run"] == 2, NOTICE_S, "a retry as run 2")
        noticed_s = time.monotonic() - frozen_at
    finally:
        os.kill(pid, signal.SIGCONT)
    assert lease_s <= noticed_s < NOTICE_S
    # Thawed, the old run's worker learns it is stale and stops; run 2 completes.
    job = wait_terminal(admin, job_id, 120)
    assert (job["status"], job["run"]) == ("completed", 2), job
