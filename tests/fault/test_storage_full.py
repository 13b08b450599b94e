"""A full disk, on a small file system of the test's own: the service says what happened.

The module mounts an 8 MB tmpfs (as root; skipped otherwise), deploys a small application
of its own whose storage root is that file system (its journal stays on the ordinary disk)
with a free-space floor of 1 MiB, and fills the disk on purpose:

- a job is admitted, then the disk fills up before its model is written: it ends
  ``failed`` with ``storage_full``, ``retryable: true`` and the stage where the write
  failed, and no partial file is left as if whole;
- below the floor, readiness reports storage failing and uploads and runs are ``507
  storage_full`` before the disk is full;
- once space returns, readiness recovers and the failed job, submitted again, completes.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.client import Api, Service, photo
from tests.serving import app_args, deploy

pytestmark = [pytest.mark.fault, pytest.mark.integration, pytest.mark.timeout(300)]

APP = "orfeas-disk"
PREFIX = "/disk"
SIZE = "8m"
FLOOR = 1024 * 1024
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An 8 MB tmpfs, mounted for this module and unmounted after it."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    root = tmp_path_factory.mktemp("small-disk")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield root
    finally:
        if subprocess.run(["umount", str(root)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], check=False)


@pytest.fixture(scope="module")
def disk_api(
    ray_serve: str, small_disk: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    from ray import serve

    args = app_args(small_disk / "store")
    args["storage"]["min_free_bytes"] = FLOOR
    journal = tmp_path_factory.mktemp("disk-journal") / "journal.sqlite3"
    args["registry"] = {"name": "job_registry_disk", "journal_path": str(journal)}
    deploy(args, name=APP, route_prefix=PREFIX)
    service = Service(url=ray_serve + PREFIX, storage_root=small_disk / "store")
    try:
        with httpx.Client(base_url=service.url, timeout=60.0) as client:
            api = Api(client, service, poll_s=0.2)
            api.wait_ready()
            yield api
    finally:
        serve.delete(APP)


def fill_up(root: Path, name: str) -> Path:
    """Write a filler file under ``root`` until the file system has no room left."""
    filler = root / name
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(b"\0" * CHUNK)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return filler


def partial_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def test_a_full_disk_is_storage_full_and_the_service_recovers(
    disk_api: Api, small_disk: Path
) -> None:
    api = disk_api
    job_id = api.upload(photo(size=160, unique=True))
    assert api.client.get("/api/health").json()["checks"]["storage"]["ok"] is True

    # The run is admitted; then the disk fills up before its model is written.
    answer = api.generate(job_id, quality=1)
    assert answer.status_code == 202, answer.text
    filler = fill_up(small_disk, "filler")
    job = api.wait(job_id)
    assert job["status"] == "failed", job
    error = job["error"]
    assert error["code"] == "storage_full", error
    assert error["retryable"] is True
    assert error["stage"] == "export", error  # storing the model is the export stage
    assert partial_files(small_disk) == []
    assert not list((small_disk / "store").glob("meshes/*/*.npz"))

    # Below the floor: readiness says so, and new work is refused (before any write).
    health = api.client.get("/api/health")
    assert health.status_code == 503
    storage = health.json()["checks"]["storage"]
    assert storage["ok"] is False and "min_free_bytes" in storage["detail"]
    files = {"image": ("p.png", photo(size=96, unique=True), "image/png")}
    refused = api.client.post("/api/upload-image", files=files)
    assert refused.status_code == 507, refused.text
    assert refused.json()["error"]["code"] == "storage_full"
    assert refused.json()["error"]["retryable"] is True
    again = api.generate(job_id, quality=1)
    assert again.status_code == 507 and again.json()["error"]["code"] == "storage_full"
    assert partial_files(small_disk) == []

    # Space returns: ready again, and the same job, submitted again, completes.
    filler.unlink()
    api.wait_ready(timeout_s=60)
    assert api.client.post("/api/upload-image", files=files).status_code == 200
    retried = api.generate(job_id, quality=1)
    assert retried.status_code == 202, retried.text
    done = api.wait(job_id, timeout_s=180)
    assert done["status"] == "completed", done
    assert api.client.get(f"/download/{job_id}/glb").content[:4] == b"glTF"
