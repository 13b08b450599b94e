"""The registry and the whole service restart: every job comes back, none runs forever."""

from __future__ import annotations

import time

import pytest

from tests.client import Api, photo
from tests.fault.harness import FaultService, kill_registry, registry_call, wait_for_registry
from tests.serving import deploy, wait_until

pytestmark = [
    pytest.mark.fault,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]


def finished_job(client: Api) -> tuple[str, bytes]:
    """A completed job and its downloaded GLB."""
    job_id = client.upload(photo(size=200, unique=True))
    assert client.generate(job_id, format="glb", quality=1).status_code == 202
    assert client.wait(job_id, 120)["status"] == "completed"
    response = client.client.get(f"/download/{job_id}/glb")
    assert response.status_code == 200
    return job_id, response.content


def test_a_killed_registry_comes_back_with_every_job_and_resumes_the_ones_in_flight(
    fault_service: FaultService, admin: Api, clients: list[Api]
) -> None:
    admin.wait_ready()
    done, glb = finished_job(admin)
    uploaded = admin.upload(photo(size=200, unique=True))
    in_flight = []
    for client in clients[:3]:
        job_id = client.upload(photo(size=320, unique=True))
        assert client.generate(job_id, format="stl", quality=6).status_code == 202
        in_flight.append(job_id)
    admin.wait_for(in_flight[0], lambda j: j["status"] == "running", 60, "a running job")

    kill_registry(fault_service.registry, restart=True)
    wait_for_registry(fault_service.registry)

    # Back with every job: the finished one still downloadable, the uploaded one waiting.
    assert admin.wait_for(done, bool, 60, "an answer")["status"] == "completed"
    assert admin.client.get(f"/download/{done}/glb").content == glb
    assert admin.wait_for(uploaded, bool, 60, "an answer")["status"] == "uploaded"
    # Runs in flight resume as new runs and end; none is left queued or running.
    ends = [admin.wait(job_id, 150) for job_id in in_flight]
    assert [j["status"] for j in ends] == ["completed"] * 3, ends
    assert [j["run"] for j in ends] == [2, 2, 2], ends  # each re-dispatched once
    health = registry_call(fault_service.registry, "ping")
    assert health.runs.leases == 0 and health.runs.resuming == 0
    print(f"journal: {health.journal_writes} writes, {health.journal_mean_write_ms} ms each")


def test_a_restarted_registry_learns_the_loaded_generators_again_without_a_job(
    fault_service: FaultService, admin: Api
) -> None:
    admin.wait_ready()
    kill_registry(fault_service.registry, restart=True)
    # The registry keeps no generator state; the ShapeTexture replicas report theirs again
    # with their health checks (every 2 s here), so readiness returns with no job run.
    admin.wait_ready(timeout_s=60)
    health = admin.client.get("/api/health")
    assert health.status_code == 200, health.text
    assert health.json()["checks"]["generator:inflate"] == {"ok": True, "detail": "inflate-1"}


def test_a_restarted_service_on_the_same_storage_keeps_finished_jobs_downloadable(
    fault_service: FaultService, admin: Api, clients: list[Api]
) -> None:
    from ray import serve

    admin.wait_ready()
    done, glb = finished_job(admin)
    interrupted = clients[0].upload(photo(size=320, unique=True))
    assert clients[0].generate(interrupted, format="stl", quality=8).status_code == 202

    # Down: the application and its registry (as a cluster restart would take them).
    serve.delete(fault_service.app)
    kill_registry(fault_service.registry, restart=False)
    started = time.monotonic()
    deploy(fault_service.args, name=fault_service.app, route_prefix=fault_service.prefix)
    admin.wait_ready()
    restart_s = time.monotonic() - started

    assert admin.status(done)["status"] == "completed"
    response = admin.client.get(f"/download/{done}/glb")
    assert response.status_code == 200 and response.content == glb
    again = admin.wait(interrupted, 150)  # resumed, or ended as interrupted
    if again["status"] == "failed":
        error = again["error"]
        assert error["code"] == "interrupted" and error["retryable"], error
    else:
        assert again["status"] == "completed", again
    wait_until(
        lambda: registry_call(fault_service.registry, "ping").runs.leases == 0,
        30,
        "every lease released",
    )
    print(f"restart took {restart_s:.1f} s; the interrupted job: {again['status']}")
