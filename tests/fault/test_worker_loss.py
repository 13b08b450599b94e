"""Workers die mid-job: the registry notices, retries the run once, then fails it clearly."""

from __future__ import annotations

from typing import Any

import pytest

from tests.client import Api, photo
from tests.fault.harness import FaultService, kill_replica, replica_names

pytestmark = [
    pytest.mark.fault,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]

#: How long the tests wait for a lost worker to be noticed (a bound on the test; what
#: they check is what happened, and in which order).
NOTICE_S = 30.0


def events(admin: Api, job_id: str) -> list[dict[str, Any]]:
    response = admin.client.get(f"/api/jobs/{job_id}/logs")
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


def retries(admin: Api, job_id: str) -> list[str]:
    """What the job's log says of each retry, in order ("run 1 retried as run 2: why")."""
    return [e["message"] for e in events(admin, job_id) if e["event"] == "retried"]


def in_shape_stage(job: dict[str, object]) -> bool:
    return job["status"] == "running" and job["stage"] in ("shape_generation", "texture_synthesis")


def test_a_lost_shape_worker_is_retried_once_then_the_job_fails_clearly(
    fault_service: FaultService, admin: Api
) -> None:
    admin.wait_ready()
    job_id = admin.upload(photo(size=320, unique=True))
    assert admin.generate(job_id, format="glb", quality=10).status_code == 202

    first = admin.wait_for(job_id, in_shape_stage, 60, "run 1 in the shape stage")
    assert first["run"] == 1
    kill_replica(fault_service.app, "ShapeTexture")
    retried = admin.wait_for(job_id, lambda j: j["run"] == 2, NOTICE_S, "a retry as run 2")
    assert retried["status"] in ("queued", "running"), retried
    (retry,) = retries(admin, job_id)
    assert retry.startswith("run 1 retried as run 2: "), retry

    # The retry waits for Serve's replacement replica, then runs; lose that one too.
    admin.wait_for(job_id, in_shape_stage, 120, "run 2 in the shape stage")
    kill_replica(fault_service.app, "ShapeTexture")
    job = admin.wait(job_id, NOTICE_S)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "model_unavailable", job
    assert job["error"]["retryable"] is True
    assert "Traceback" not in str(job["error"])

    # The service heals: the same job runs again once a replica is back.
    admin.wait_ready()
    assert admin.generate(job_id, format="stl", quality=1).status_code == 202
    assert admin.wait(job_id, 120)["status"] == "completed"


def test_a_lost_background_worker_is_retried_and_every_job_completes(
    fault_service: FaultService, admin: Api, clients: list[Api]
) -> None:
    admin.wait_ready()
    jobs = [client.upload(photo(size=480, unique=True)) for client in clients]
    for client, job_id in zip(clients, jobs, strict=True):
        assert client.generate(job_id, format="stl", quality=1).status_code == 202
    admin.wait_for(
        jobs[0],
        lambda j: j["stage"] == "background_removal",
        60,
        "background removal under way",
    )
    kill_replica(fault_service.app, "BackgroundRemoval")
    ends = [admin.wait(job_id, 150) for job_id in jobs]
    outcome = [(j["status"], j["run"], j["error"]) for j in ends]
    assert [j["status"] for j in ends] == ["completed"] * 4, outcome
    assert max(j["run"] for j in ends) == 2, "no run was in flight on the killed replica"
    assert all(admin.try_status(j) is not None for j in jobs)


def replica_pid(app: str, deployment: str) -> int:
    import os

    import ray

    (name,) = replica_names(app, deployment)
    actor = ray.get_actor(name, namespace="serve")
    return int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30))


def test_a_frozen_worker_loses_its_lease_and_its_late_reports_are_ignored(
    fault_service: FaultService, admin: Api
) -> None:
    import os
    import signal

    admin.wait_ready()
    pid = replica_pid(fault_service.app, "ShapeTexture")
    job_id = admin.upload(photo(size=320, unique=True))
    assert admin.generate(job_id, format="glb", quality=10).status_code == 202
    admin.wait_for(job_id, in_shape_stage, 60, "run 1 in the shape stage")
    os.kill(pid, signal.SIGSTOP)  # alive to Ray, silent to the registry
    try:
        admin.wait_for(job_id, lambda j: j["run"] == 2, NOTICE_S, "a retry as run 2")
    finally:
        os.kill(pid, signal.SIGCONT)
    # The lease ran out (not a failed call: the worker was alive), and only then the retry.
    (retry,) = retries(admin, job_id)
    assert retry.startswith("run 1 retried as run 2: no heartbeat for run 1 within its lease")
    # Thawed, the old run's worker learns it is stale and stops; run 2 completes.
    job = admin.wait(job_id, 120)
    assert (job["status"], job["run"]) == ("completed", 2), job
    assert not any(e["event"] == "completed" and e["run"] == 1 for e in events(admin, job_id))
