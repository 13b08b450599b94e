"""Variants in the registry's durable state: journaled with their job, removed with it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from serve_app.config_policies import RetentionConfig
from serve_app.contracts.params import GenerationParams
from serve_app.contracts.runs import RunRequest, RunResult, UploadInfo
from serve_app.contracts.variants import VariantInfo
from serve_app.registry.journal import JobJournal, decode_record, encode_record
from serve_app.registry.retention import plan_expiry, scan_store, sweep
from serve_app.registry.table import JobTable
from serve_app.storage import ArtifactStore

REQUEST = RunRequest(params=GenerationParams(quality=2), format="glb", generator="inflate")
VIEW = "5" * 32


def job_id(i: int) -> str:
    return f"{i:032x}"


def variant(vid: str, base: str | None = None) -> VariantInfo:
    return VariantInfo(vid, "optimize", {"target_faces": 500, "repair": True}, base, 500, True)


def completed(table: JobTable, store: ArtifactStore, i: int, key: str) -> None:
    upload = store.put_upload(job_id(i), f"image {i}".encode(), "image/png")
    table.add(job_id(i), upload)
    table.start_run(job_id(i), REQUEST)
    table.complete(job_id(i), 1, RunResult(key, ("glb",), "inflate", "v1"))
    for mesh_key in (key,):
        store.put_mesh(mesh_key, b"mesh")


def test_variants_survive_the_journal_and_a_new_run_clears_them(tmp_path: Path) -> None:
    table = JobTable()
    table.add(job_id(1), UploadInfo("a" * 64, 3, "image/png"))
    assert table.add_variant(job_id(1), 0, variant("1" * 64)) is None  # not completed
    table.start_run(job_id(1), REQUEST)
    table.complete(job_id(1), 1, RunResult("b" * 64, ("glb",), "inflate", "v1"))
    assert table.add_variant(job_id(1), 0, variant("1" * 64)) is None  # an earlier run's
    record = table.add_variant(job_id(1), 1, variant("1" * 64))
    assert record is not None
    table.add_variant(job_id(1), 1, variant("2" * 64, base="1" * 64))
    copy = decode_record(encode_record(record))
    assert copy == record and list(copy.variants) == ["1" * 64, "2" * 64]
    assert record.snapshot().variants == tuple(record.variants.values())

    journal = JobJournal(tmp_path / "j.sqlite3")
    journal.save(record)
    assert journal.load(job_id(1)) == record
    assert journal.variant_keys(job_id(1)) == ["1" * 64, "2" * 64]
    assert journal.references()[1] == {"b" * 64, "1" * 64, "2" * 64}
    assert journal.refs_of([job_id(1)]) == {"a" * 64, "b" * 64, "1" * 64, "2" * 64}

    table.start_run(job_id(1), REQUEST)
    assert record.variants == {} and record.snapshot().variants == ()


def test_retention_removes_a_jobs_variants_with_it_and_keeps_the_others(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    journal = JobJournal(tmp_path / "registry" / "journal.sqlite3")
    table = JobTable()
    now = time.time()
    old_key, old_variant, new_key, new_variant = "a" * 64, "b" * 64, "c" * 64, "d" * 64
    for i, key, vid, age in ((1, old_key, old_variant, 7200), (2, new_key, new_variant, 10)):
        completed(table, store, i, key)
        record = table.add_variant(job_id(i), 1, variant(vid))
        assert record is not None
        store.put_mesh(vid, b"variant mesh")
        store.put_export(vid, "stl", b"solid")
        store.put_preview(vid, VIEW, b"png")
        store.put_preview(key, VIEW, b"thumbnail")
        record.updated_at = now - age
        journal.save(record)
    for path in tmp_path.rglob("*"):
        if path.is_file() and "registry" not in path.parts:
            os.utime(path, (now - 7200, now - 7200))

    config = RetentionConfig(ttl_s=3600, grace_s=60)
    scan = scan_store(store)
    assert {f.kind for f in scan.files} == {"upload", "mesh", "export", "preview"}
    expired = plan_expiry(journal, config, scan, now)
    assert expired == [job_id(1)]
    refs = journal.refs_of(expired)
    journal.delete(expired)
    uploads, keys = journal.references()
    done = sweep(tmp_path, scan, expired, refs, (journal.job_ids(), uploads, keys), config, now)

    for gone in (
        store.mesh_path(old_key), store.mesh_path(old_variant),
        store.export_path(old_variant, "stl"), store.preview_path(old_variant, VIEW),
        store.preview_path(old_key, VIEW),
    ):  # fmt: skip
        assert not gone.exists(), gone
    for kept in (
        store.mesh_path(new_key), store.mesh_path(new_variant),
        store.export_path(new_variant, "stl"), store.preview_path(new_variant, VIEW),
        store.preview_path(new_key, VIEW),
    ):  # fmt: skip
        assert kept.exists(), kept
    assert done.files == 6  # the upload, two meshes, an export, two previews


def test_a_batch_manifest_goes_once_its_jobs_are_gone(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.put_batch("e" * 32, {"owner": None, "jobs": [{"job_id": job_id(1)}, {"job_id": None}]})
    store.put_batch("f" * 32, {"owner": None, "jobs": [{"job_id": job_id(2)}]})
    now = time.time() + 120
    config = RetentionConfig(ttl_s=3600, grace_s=60)
    scan = scan_store(store)
    sweep(tmp_path, scan, [job_id(1)], set(), ({job_id(2)}, set(), set()), config, now)
    assert store.read_batch("e" * 32) is None
    assert store.read_batch("f" * 32) is not None
