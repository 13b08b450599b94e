"""Parts of the running service die mid-job: no job is cancelled, orphaned or left running."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.serve_client import Api

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def kill_replica(deployment: str) -> None:
    """Kill one replica of ``deployment``; the Serve controller starts a replacement."""
    import ray

    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::orfeas#{deployment}#")
    ]
    assert names, f"no replica of {deployment} found"
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)


def wait_until_ready(api: Api, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if api.client.get("/api/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError("the service did not become ready again")


def status_when_reachable(api: Api, job_id: str) -> dict[str, object] | None:
    try:
        response = api.client.get(f"/api/job-status/{job_id}")
    except httpx.TransportError:
        return None
    return dict(response.json()) if response.status_code == 200 else None


def test_an_ingress_restart_neither_cancels_nor_orphans_a_running_job(api: Api) -> None:
    job_id = api.upload(api.unique_photo())
    assert api.generate(job_id, format="glb", quality=9).status_code == 202
    kill_replica("Ingress")
    deadline = time.monotonic() + 120
    while (job := status_when_reachable(api, job_id)) is None or job["status"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, "the job never finished"
        time.sleep(0.1)
    assert job["status"] == "completed", job
    wait_until_ready(api)


def test_a_lost_shape_worker_ends_the_job_instead_of_leaving_it_running(api: Api) -> None:
    job_id = api.upload(api.unique_photo())
    assert api.generate(job_id, format="stl", quality=10).status_code == 202
    deadline = time.monotonic() + 60
    while api.status(job_id)["stage"] in (None, "background_removal"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    kill_replica("ShapeTexture")
    job = api.wait(job_id, timeout_s=60)
    if job["status"] == "failed":  # the run was cut short: a clear, retryable error
        assert job["error"]["code"] == "model_unavailable", job
        assert "Traceback" not in str(job["error"])
    else:  # it had already finished when the replica went
        assert job["status"] == "completed", job
    wait_until_ready(api)
    again = api.generate(job_id, format="stl", quality=2)
    assert again.status_code == 202, again.text
    assert api.wait(job_id, timeout_s=120)["status"] == "completed"
