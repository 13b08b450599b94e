"""Batches through the API, in-process: photos or jobs admitted one by one, followed as one."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serve_app.api.batch_service import summarize
from serve_app.api.security import hash_key
from serve_app.schemas.tools import BatchJob
from tests.support import encode, photo
from tests.unit.inprocess import InProcessService, app_config, in_process_service

NAMES = ("chelsea", "coffee", "astronaut", "rocket")


def small(name: str) -> bytes:
    return encode(photo(name)[:96, :128])


@pytest.fixture
def service(tmp_path: Path) -> Iterator[InProcessService]:
    with in_process_service(app_config(tmp_path)) as service:
        yield service


def send(service: InProcessService, images: list[bytes], params: Any = None, **kw: Any) -> Any:
    files = [("images", (f"p{i}.png", data, "image/png")) for i, data in enumerate(images)]
    data = (
        {}
        if params is None
        else {"params": params if isinstance(params, str) else json.dumps(params)}
    )
    return service.http.post("/api/batch-generate", files=files, data=data, **kw)


def wait_batch(service: InProcessService, batch_id: str, **kw: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, Any] = service.http.get(f"/api/batches/{batch_id}", **kw).json()
        if body["status"] != "running":
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.02)


def test_photos_are_checked_and_admitted_one_by_one(service: InProcessService) -> None:
    photos = [small(n) for n in NAMES[:3]]
    for data in photos:
        service.seed_cache(data, quality=2)
    response = send(service, [photos[0], b"not a photo", photos[1], photos[2]], {"quality": 2})
    assert response.status_code == 202, response.text
    created = response.json()
    entries = created["jobs"]
    assert [e["index"] for e in entries] == [0, 1, 2, 3]
    assert entries[1]["job_id"] is None and entries[1]["status"] == "rejected"
    assert entries[1]["error"]["code"] == "unsupported_media_type"
    made = [e for e in entries if e["job_id"]]
    assert len(made) == 3 and all(e["status"] in ("queued", "completed") for e in made)

    body = wait_batch(service, created["batch_id"])
    assert body["status"] == "partial"  # three completed, one photo refused
    assert body["counts"] == {"completed": 3, "rejected": 1}
    assert body["progress"] == 100.0
    done = [j for j in body["jobs"] if j["status"] == "completed"]
    assert all(j["download_url"].endswith("/glb") and j["thumbnail_url"] for j in done)
    for job in done:
        status = service.http.get(f"/api/job-status/{job['job_id']}").json()
        assert status["quality"] == 2 and status["status"] == "completed"


def test_a_batch_of_jobs_by_id_and_its_event_stream(service: InProcessService) -> None:
    first, second = service.upload(name="coffee"), service.upload(name="rocket")
    for job_id in (first, second):
        service.complete_from_cache(job_id, quality=1)
    body = {"job_ids": [first, "0" * 32, second], "params": {"quality": 1, "format": "stl"}}
    response = service.http.post("/api/batch-generate", json=body)
    assert response.status_code == 202, response.text
    entries = response.json()["jobs"]
    assert entries[1] == {
        "index": 1,
        "job_id": None,
        "status": "rejected",
        "error": {
            "code": "job_not_found",
            "message": f"no job with id {'0' * 32}",
            "job_id": "0" * 32,
        },
    }
    batch_id = response.json()["batch_id"]

    with service.http.stream("GET", f"/api/batches/{batch_id}/events?keepalive_s=0.5") as stream:
        events = [
            json.loads(line[len("data: ") :])
            for line in stream.iter_lines()
            if line.startswith("data: ")
        ]
    assert events and events[-1]["status"] == "partial"
    assert events[-1]["counts"] == {"completed": 2, "rejected": 1}
    assert all(e["batch_id"] == batch_id for e in events)
    assert [j["download_url"] for j in events[-1]["jobs"] if j["job_id"]] == [
        f"/download/{first}/stl",
        f"/download/{second}/stl",
    ]


@pytest.mark.parametrize(
    ("images", "params", "status", "code"),
    [
        (1, {"quality": 11}, 422, "validation_error"),
        (1, {"generator": "hunyuan3d"}, 422, "validation_error"),
        (1, {"seed": 5}, 422, "validation_error"),  # inflate takes no seed
        (1, "{not json", 400, "invalid_json"),
        (17, None, 422, "validation_error"),
        (0, None, 422, "validation_error"),
    ],
)
def test_bad_batches_are_refused_whole(
    service: InProcessService, images: int, params: Any, status: int, code: str
) -> None:
    photos = [small("chelsea")] * images
    if images:
        response = send(service, photos, params)
    else:
        response = service.http.post("/api/batch-generate", files={"other": ("a", b"1")})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert service.http.get("/api/jobs").json()["total"] == 0  # nothing was made


def test_other_bodies_are_refused(service: InProcessService) -> None:
    text = service.http.post(
        "/api/batch-generate", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert text.status_code == 415
    too_many = service.http.post("/api/batch-generate", json={"job_ids": ["a" * 32] * 17})
    assert too_many.status_code == 422
    unknown = service.http.get(f"/api/batches/{'b' * 32}")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "batch_not_found"
    assert service.http.get("/api/batches/nope").status_code == 422


def test_a_batch_belongs_to_the_key_that_made_it(tmp_path: Path) -> None:
    owner, other = "owner-key", "other-key"
    security = {"api_key_hashes": [hash_key(owner), hash_key(other)]}
    with in_process_service(app_config(tmp_path, security=security)) as service:
        mine = {"Authorization": f"Bearer {owner}"}
        theirs = {"Authorization": f"Bearer {other}"}
        job_id = service.upload(mine, name="coffee")
        response = send(service, [small("chelsea")], {"quality": 1}, headers=mine)
        assert response.status_code == 202, response.text
        batch_id = response.json()["batch_id"]
        made = response.json()["jobs"][0]["job_id"]
        assert service.http.get(f"/api/job-status/{made}", headers=theirs).status_code == 404
        assert service.http.get(f"/api/batches/{batch_id}", headers=theirs).status_code == 404
        events = service.http.get(f"/api/batches/{batch_id}/events", headers=theirs)
        assert events.status_code == 404 and events.json()["error"]["code"] == "batch_not_found"
        assert service.http.get(f"/api/batches/{batch_id}", headers=mine).status_code == 200
        by_id = service.http.post(
            "/api/batch-generate", json={"job_ids": [job_id]}, headers=theirs
        ).json()["jobs"][0]
        assert by_id["job_id"] is None and by_id["error"]["code"] == "job_not_found"


def test_the_status_of_a_batch_from_its_entries() -> None:
    def job(status: str, progress: float = 0.0) -> BatchJob:
        return BatchJob(index=0, job_id=None, status=status, progress=progress)

    running = summarize("b", 0.0, [job("completed", 100), job("running", 40), job("rejected")])
    assert running.status == "running" and running.progress == 80.0
    assert running.counts == {"completed": 1, "running": 1, "rejected": 1}
    assert summarize("b", 0.0, [job("completed", 100)] * 2).status == "completed"
    assert summarize("b", 0.0, [job("completed", 100), job("failed")]).status == "partial"
    assert summarize("b", 0.0, [job("failed"), job("uploaded")]).status == "failed"
    assert summarize("b", 0.0, [job("failed"), job("uploaded")]).progress == 50.0


def test_a_photo_over_the_size_limit_gets_one_answer_alone_or_in_a_batch(tmp_path: Path) -> None:
    limit = 60_000
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * limit  # over the limit, within the body's framing
    config = app_config(tmp_path, pipeline={"limits": {"max_upload_bytes": limit}})
    with in_process_service(config) as service:
        alone = service.http.post("/api/upload-image", files={"image": ("b.png", big, "image/png")})
        assert alone.status_code == 413, alone.text
        assert alone.json()["error"]["code"] == "payload_too_large"
        batch = send(service, [small("chelsea"), big])
        assert batch.status_code == 202, batch.text
        kept, refused = batch.json()["jobs"]
        assert kept["job_id"] is not None and kept["status"] != "rejected"
        assert (refused["job_id"], refused["status"]) == (None, "rejected")
        assert refused["error"] == alone.json()["error"]
