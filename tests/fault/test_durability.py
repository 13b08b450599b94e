"""The registry and the whole service restart: every job comes back, none runs forever."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fault.harness import (
    FaultService,
    generate,
    kill_registry,
    photo,
    registry_call,
    status,
    upload,
    wait_for,
    wait_ready,
    wait_terminal,
)
from tests.serving import deploy, wait_until

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.timeout(240)]


def finished_job(client: httpx.Client) -> tuple[str, bytes]:
    """A completed job and its downloaded GLB."""
    job_id = upload(client, photo(200))
    assert generate(client, job_id, format="glb", quality=1).status_code == 202
    assert wait_terminal(client, job_id, 120)["status"] == "completed"
    response = client.get(f"/download/{job_id}/glb")
    assert response.status_code == 200
    return job_id, response.content


def test_a_killed_registry_comes_back_with_every_job_and_resumes_the_ones_in_flight(
    fault_service: FaultService, admin: httpx.Client, clients: list[httpx.Client]
) -> None:
    wait_ready(admin)
    done, glb = finished_job(admin)
    uploaded = upload(admin, photo(200))
    in_flight = []
    for client in clients[:3]:
        job_id = upload(client, photo(320))
        assert generate(client, job_id, format="stl", quality=6).status_code == 202
        in_flight.append(job_id)
    wait_for(admin, in_flight[0], lambda j: j["status"] == "running", 60, "a running job")

    kill_registry(fault_service.registry, restart=True)

    # Back with every job: the finished one still downloadable, the uploaded one waiting.
    job = wait_for(admin, done, lambda j: True, 60, "the registry answering again")
    assert job["status"] == "completed"
    assert admin.get(f"/download/{done}/glb").content == glb
    assert status(admin, uploaded)["status"] == "uploaded"  # type: ignore[index]
    # Runs in flight resume as new runs and end; none is left queued or running.
    ends = [wait_terminal(admin, job_id, 150) for job_id in in_flight]
    assert [j["status"] for j in ends] == ["completed"] * 3, ends
    assert [j["run"] for j in ends] == [2, 2, 2], ends  # each re-dispatched once
    durability = registry_call(fault_service.registry, "durability")
    assert durability["leases"] == 0 and durability["resuming"] == 0
    print(f"journal: {durability}")


def test_a_restarted_registry_learns_the_loaded_generators_again_without_a_job(
    fault_service: FaultService, admin: httpx.Client
) -> None:
    wait_ready(admin)
    kill_registry(fault_service.registry, restart=True)
    # The registry keeps no generator state; the ShapeTexture replicas report theirs again
    # with their health checks (every 2 s here), so readiness returns with no job run.
    wait_ready(admin, timeout_s=60)
    check = admin.get("/api/health").json()["checks"]["generator:inflate"]
    assert check == {"ok": True, "detail": "inflate-1"}


def test_a_restarted_service_on_the_same_storage_keeps_finished_jobs_downloadable(
    fault_service: FaultService, admin: httpx.Client, clients: list[httpx.Client]
) -> None:
    from ray import serve

    wait_ready(admin)
    done, glb = finished_job(admin)
    interrupted = upload(clients[0], photo(320))
    assert generate(clients[0], interrupted, format="stl", quality=8).status_code == 202

    # Down: the application and its registry (as a cluster restart would take them).
    serve.delete(fault_service.app)
    kill_registry(fault_service.registry, restart=False)
    started = time.monotonic()
    deploy(fault_service.args, name=fault_service.app, route_prefix=fault_service.prefix)
    wait_ready(admin)
    restart_s = time.monotonic() - started

    assert status(admin, done)["status"] == "completed"  # type: ignore[index]
    response = admin.get(f"/download/{done}/glb")
    assert response.status_code == 200 and response.content == glb
    again = wait_terminal(admin, interrupted, 150)  # resumed, or ended as interrupted
    if again["status"] == "failed":
        assert again["error"]["code"] == "interrupted" and again["error"]["retryable"], again
    else:
        assert again["status"] == "completed", again
    wait_until(
        lambda: registry_call(fault_service.registry, "durability")["leases"] == 0,
        30,
        "every lease released",
    )
    print(f"restart took {restart_s:.1f} s; the interrupted job: {again['status']}")
    assert restart_s < 120
