"""Below the free-space floor: readiness says so, uploads and runs are 507 storage_full."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from serve_app.errors import StorageFullError
from serve_app.ray_errors import as_orfeas_error
from serve_app.storage import ArtifactStore
from tests.support import encode, photo
from tests.unit.inprocess import app_config, in_process_service


def test_below_the_floor_uploads_and_runs_are_507_and_readiness_fails(tmp_path: Path) -> None:
    files = {"image": ("p.png", encode(photo("coffee")[:64, :64]), "image/png")}
    with in_process_service(app_config(tmp_path)) as service:
        job_id = service.upload()
        assert service.http.get("/api/health").json()["checks"]["storage"]["ok"] is True

    # A floor above what the disk has free: nothing new is taken.
    floor = shutil.disk_usage(tmp_path).free * 2
    with in_process_service(
        app_config(tmp_path, storage={"root": str(tmp_path), "min_free_bytes": floor})
    ) as service:
        refused = service.http.post("/api/upload-image", files=files)
        assert refused.status_code == 507, refused.text
        error = refused.json()["error"]
        assert error["code"] == "storage_full" and error["retryable"] is True
        assert error["min_free_bytes"] == floor
        run = service.http.post("/api/generate-3d", json={"job_id": job_id, "quality": 1})
        assert run.status_code == 507 and run.json()["error"]["code"] == "storage_full"
        storage = service.http.get("/api/health").json()["checks"]["storage"]
        assert storage["ok"] is False and "storage.min_free_bytes" in storage["detail"]
        assert service.http.get(f"/api/job-status/{job_id}").json()["status"] == "uploaded"

    # Room again: work is taken again.
    with in_process_service(app_config(tmp_path)) as service:
        assert service.http.post("/api/upload-image", files=files).status_code == 200
        assert service.http.get("/api/health").json()["checks"]["storage"]["ok"] is True


def test_a_disk_full_error_from_anywhere_is_storage_full_not_internal() -> None:
    error = as_orfeas_error(OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(error, StorageFullError)
    assert error.status_code == 507 and error.details["retryable"] is True


def test_check_room_names_what_is_free_and_the_floor(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.check_room(0)
    with pytest.raises(StorageFullError) as full:
        store.check_room(store.free_bytes() * 4)
    assert full.value.details["free_bytes"] < full.value.details["min_free_bytes"]
