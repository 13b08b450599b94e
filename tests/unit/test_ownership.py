"""With API keys a job belongs to the key that uploaded it; without keys nothing changes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import trimesh
from starlette.websockets import WebSocketDisconnect

from serve_app.api.security import hash_key
from tests.unit.inprocess import InProcessService, app_config, in_process_service

OWNER, OTHER, ADMIN = "owner-key", "other-key", "admin-key"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed(tmp_path: Path):  # type: ignore[no-untyped-def]
    security = {
        "api_key_hashes": [hash_key(OWNER), hash_key(OTHER)],
        "admin_key_hashes": [hash_key(ADMIN)],
    }
    with in_process_service(app_config(tmp_path, security=security)) as service:
        yield service


def completed_job(service: InProcessService, headers: dict[str, str]) -> str:
    job_id = service.upload(headers)
    service.complete_from_cache(job_id, quality=2)
    answer = service.http.post(
        "/api/generate-3d", json={"job_id": job_id, "quality": 2}, headers=headers
    )
    assert answer.status_code == 202, answer.text
    service.wait_view(lambda: service.view.peek(job_id).status == "completed")  # type: ignore[union-attr]
    return job_id


def test_another_key_gets_404_for_everything_about_a_job(keyed: InProcessService) -> None:
    job_id = completed_job(keyed, bearer(OWNER))
    http, other = keyed.http, bearer(OTHER)
    refused = [
        http.get(f"/api/job-status/{job_id}", headers=other),
        http.get(f"/download/{job_id}/stl", headers=other),
        http.get(f"/api/jobs/{job_id}/events", headers=other),
        http.get(f"/api/jobs/{job_id}/logs", headers=other),
        http.post(f"/api/jobs/{job_id}/cancel", headers=other),
        http.post("/api/generate-3d", json={"job_id": job_id}, headers=other),
    ]
    unknown = http.get(f"/api/job-status/{'f' * 32}", headers=other).json()["error"]
    for response in refused:
        assert response.status_code == 404, response.request.url
        error = response.json()["error"]
        assert error["code"] == "job_not_found"
        assert error["message"].replace(job_id, "ID") == unknown["message"].replace("f" * 32, "ID")
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        http.websocket_connect(f"/ws/jobs/{job_id}?api_key={OTHER}") as socket,
    ):
        socket.receive_json()
    assert closed.value.code == 4404
    assert http.get("/api/jobs", headers=other).json() == {
        "jobs": [],
        "total": 0,
        "offset": 0,
        "limit": 20,
    }
    # The job itself is untouched by all that: not cancelled, not run again.
    status = http.get(f"/api/job-status/{job_id}", headers=bearer(OWNER)).json()
    assert (status["status"], status["run"]) == ("completed", 1)


def test_the_owner_and_an_admin_see_and_use_the_job(keyed: InProcessService) -> None:
    job_id = completed_job(keyed, bearer(OWNER))
    other_job = keyed.upload(bearer(OTHER))
    http = keyed.http
    for key in (OWNER, ADMIN):
        assert http.get(f"/api/job-status/{job_id}", headers=bearer(key)).status_code == 200
        download = http.get(f"/download/{job_id}/stl", headers=bearer(key))
        assert download.status_code == 200
        assert len(trimesh.load(io.BytesIO(download.content), file_type="stl").faces) == 4
        events = http.get(f"/api/jobs/{job_id}/events", headers=bearer(key))
        assert events.status_code == 200 and '"status":"completed"' in events.text
        assert http.get(f"/api/jobs/{job_id}/logs", headers=bearer(key)).status_code == 200
    with http.websocket_connect(f"/ws/jobs/{job_id}?api_key={OWNER}") as socket:
        assert socket.receive_json()["status"] == "completed"
    mine = http.get("/api/jobs", headers=bearer(OWNER)).json()
    assert [j["job_id"] for j in mine["jobs"]] == [job_id] and mine["total"] == 1
    everyone = http.get("/api/jobs", headers=bearer(ADMIN)).json()
    assert {j["job_id"] for j in everyone["jobs"]} == {job_id, other_job}
    # An admin may act on any job; the job stays its owner's.
    assert http.post(f"/api/jobs/{other_job}/cancel", headers=bearer(ADMIN)).status_code == 409
    assert http.get(f"/api/job-status/{other_job}", headers=bearer(OWNER)).status_code == 404


def test_ownership_survives_the_registry_losing_the_job(keyed: InProcessService) -> None:
    """A job the registry never registered (its call failed) is recovered from the store
    with its owner, so it does not become everyone's.
    """
    from serve_app.storage import ArtifactStore
    from tests.support import encode, photo

    store = ArtifactStore(keyed.config.storage.root)
    job_id = "a" * 32
    owner_id = hash_key(OWNER)[7:19]
    store.put_upload(job_id, encode(photo("coffee")[:64, :64]), "image/png", owner_id)
    assert keyed.http.get(f"/api/job-status/{job_id}", headers=bearer(OTHER)).status_code == 404
    assert keyed.http.get(f"/api/job-status/{job_id}", headers=bearer(OWNER)).status_code == 200


def test_without_keys_every_caller_sees_every_job(tmp_path: Path) -> None:
    with in_process_service(app_config(tmp_path)) as service:
        job_id = service.upload()
        anyone = {"X-Forwarded-For": "203.0.113.7"}
        assert service.http.get(f"/api/job-status/{job_id}", headers=anyone).status_code == 200
        assert service.http.get("/api/jobs", headers=anyone).json()["total"] == 1
