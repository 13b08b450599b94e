"""Job semantics over real Ray Serve: one active run, runs outlive requests, the cache."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx
import pytest
import trimesh

from tests.client import Api

pytestmark = pytest.mark.integration

QUALITIES = range(1, 11)


def test_fifty_concurrent_generates_of_one_job_give_one_202_and_49_409(api: Api) -> None:
    job_id = api.upload(api.unique_photo())

    async def race() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=api.service.url, timeout=60, limits=limits) as c:
            body = {"job_id": job_id, "format": "stl", "quality": 1}
            return await asyncio.gather(*(c.post("/api/generate-3d", json=body) for _ in range(50)))

    responses = asyncio.run(race())
    assert Counter(r.status_code for r in responses) == {202: 1, 409: 49}
    conflicts = [r.json()["error"]["code"] for r in responses if r.status_code == 409]
    assert set(conflicts) == {"job_conflict"}
    first = api.wait(job_id)
    assert first["status"] == "completed" and first["run"] == 1

    # Once the run has ended, the same job may run again.
    again = api.generate(job_id, format="glb", quality=2)
    assert again.status_code == 202, again.text
    assert again.json()["run"] == 2
    second = api.wait(job_id)
    assert second["status"] == "completed" and second["run"] == 2
    assert second["format"] == "glb" and second["quality"] == 2


def submit_raw(api: Api, job_id: str) -> socket.socket:
    """Send ``POST /api/generate-3d`` on a raw socket and return it, answer unread."""
    body = json.dumps({"job_id": job_id, "format": "stl", "quality": 2}).encode()
    address = urlsplit(api.service.url)
    request = (
        b"POST /api/generate-3d HTTP/1.1\r\nHost: %b\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b"
    ) % (address.netloc.encode(), len(body), body)
    sock = socket.create_connection((address.hostname, address.port))
    sock.sendall(request)
    return sock


def test_a_client_that_disconnects_right_after_submitting_still_gets_a_completed_job(
    api: Api,
) -> None:
    job_id = api.upload(api.unique_photo())
    sock = submit_raw(api, job_id)
    try:
        deadline = time.monotonic() + 10
        while api.status(job_id)["status"] == "uploaded":  # accepted: the registry has it
            assert time.monotonic() < deadline, "the submission never reached the registry"
            time.sleep(0.005)
    finally:
        sock.close()  # gone without reading the answer, while the job runs
    job = api.wait(job_id)
    assert job["status"] == "completed", job
    assert api.client.get(f"/download/{job_id}/stl").status_code == 200


def test_a_client_that_hangs_up_mid_request_leaves_no_half_claimed_job(api: Api) -> None:
    """Hanging up before the server accepted a submit may drop it (the proxy cancels the
    request), but never leaves the job stuck: it is either untouched or it runs to the end.
    """
    job_id = api.upload(api.unique_photo())
    sock = submit_raw(api, job_id)
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    time.sleep(1.0)
    job = api.status(job_id)
    if job["status"] == "uploaded":
        assert job["run"] == 0
        assert api.generate(job_id, format="stl", quality=2).status_code == 202
    assert api.wait(job_id)["status"] == "completed"


def test_same_image_and_params_complete_from_cache_without_generating(api: Api) -> None:
    data = api.unique_photo()
    first = api.upload(data)
    assert api.generate(first, format="stl", quality=4).status_code == 202
    assert api.wait(first)["cached"] is False

    second = api.upload(data)
    assert api.generate(second, format="ply", quality=4).status_code == 202
    while (job := api.status(second))["status"] not in ("completed", "failed"):
        pass
    assert job["status"] == "completed"
    assert job["cached"] is True  # completed by the registry without calling ShapeTexture
    assert not job["stage_durations"], "a cache hit runs no stage"  # its time: bench/serve.py
    same = api.client.get(f"/download/{first}/stl").content
    assert api.client.get(f"/download/{second}/stl").content == same

    # Other parameters are another generation.
    third = api.upload(data)
    assert api.generate(third, format="stl", quality=5).status_code == 202
    assert api.wait(third)["cached"] is False


@pytest.fixture(scope="module")
def quality_jobs(api: Api) -> dict[int, str]:
    """One job per quality level, all submitted at once, on the same photo."""
    data = api.unique_photo()
    jobs = {}
    for quality in QUALITIES:
        job_id = api.upload(data)
        response = api.generate(job_id, format="stl", quality=quality)
        assert response.status_code == 202, response.text
        jobs[quality] = job_id
    return jobs


@pytest.mark.parametrize("quality", QUALITIES)
def test_every_quality_level_completes(
    api: Api, quality_jobs: dict[int, str], quality: int
) -> None:
    job = api.wait(quality_jobs[quality], timeout_s=180)
    assert job["status"] == "completed", job
    assert job["quality"] == quality
    mesh = trimesh.load(io.BytesIO(api.client.get(job["download_url"]).content), file_type="stl")
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_higher_quality_makes_finer_meshes(api: Api, quality_jobs: dict[int, str]) -> None:
    faces = {}
    for quality in (1, 10):
        job = api.wait(quality_jobs[quality], timeout_s=180)
        data = api.client.get(job["download_url"]).content
        faces[quality] = len(trimesh.load(io.BytesIO(data), file_type="stl").faces)
    assert faces[10] > 4 * faces[1]


def test_status_reports_progress_through_the_stages(api: Api) -> None:
    job_id = api.upload(api.unique_photo())
    assert api.generate(job_id, format="glb", quality=8).status_code == 202
    seen = []
    while (job := api.status(job_id))["status"] not in ("completed", "failed", "cancelled"):
        seen.append((job["status"], job["stage"], job["progress"]))
        time.sleep(0.02)
    assert job["status"] == "completed"
    progress = [p for _, _, p in seen]
    assert progress == sorted(progress), "progress never goes back"
    assert {status for status, _, _ in seen} <= {"queued", "running"}
    assert job["started_at"] and job["finished_at"] >= job["started_at"]
