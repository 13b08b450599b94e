"""Retention sweeps the text-to-image cache's index files with the uploads they point to."""

from __future__ import annotations

import os
import time
from pathlib import Path

from serve_app.config_policies import RetentionConfig
from serve_app.registry.retention import scan_store, sweep
from serve_app.storage import ArtifactStore


def job_id(i: int) -> str:
    return f"{i:032x}"


def test_an_image_index_goes_with_its_upload_and_a_live_one_stays(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    gone_key, kept_key, broken_key = "1" * 64, "2" * 64, "3" * 64
    gone = store.put_generated_image(job_id(1), gone_key, b"\x89PNG expired", owner=None)
    kept = store.put_generated_image(job_id(2), kept_key, b"\x89PNG in use", owner=None)
    broken = tmp_path / "images" / broken_key[:2] / f"{broken_key}.json"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"{not json")
    now = time.time()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            os.utime(path, (now - 7200, now - 7200))

    config = RetentionConfig(ttl_s=3600, grace_s=60)
    scan = scan_store(store)
    assert len(scan.image_indexes) == 3
    remaining = ({job_id(2)}, {kept.sha256}, set[str]())
    done = sweep(tmp_path, scan, [job_id(1)], {gone.sha256}, remaining, config, now)

    assert store.generated_image(gone_key) is None
    assert not (tmp_path / "images" / gone_key[:2] / f"{gone_key}.json").exists()
    assert not broken.exists()
    assert store.generated_image(kept_key) == kept
    assert done.files == 3  # the expired upload, its index, the unreadable index


def test_a_young_image_index_stays_while_its_upload_is_written(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    info = store.put_generated_image(job_id(1), "4" * 64, b"\x89PNG new", owner=None)
    store.upload_file(info.sha256).unlink()  # the upload not (yet) in place
    config = RetentionConfig(ttl_s=3600, grace_s=60)
    sweep(tmp_path, scan_store(store), [], set(), (set(), set(), set()), config, time.time())
    assert (tmp_path / "images" / "44" / f"{'4' * 64}.json").exists()
