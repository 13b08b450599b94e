"""The registry's durable state without Ray: the journal, leases and retention."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from serve_app.config_policies import RetentionConfig
from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.params import Dimensions, GenerationParams
from serve_app.contracts.runs import RunRequest, RunResult, UploadInfo
from serve_app.contracts.stages import Stage
from serve_app.registry.journal import JobJournal, decode_record, encode_record
from serve_app.registry.leases import LeaseBook
from serve_app.registry.retention import plan_expiry, scan_store, sweep
from serve_app.registry.table import JobTable
from serve_app.storage import ArtifactStore

UPLOAD = UploadInfo(sha256="a" * 64, size_bytes=3, media_type="image/png")
REQUEST = RunRequest(
    params=GenerationParams(quality=3, dimensions=Dimensions(width=40.0)),
    format="stl",
    generator="inflate",
)


def job_id(i: int) -> str:
    return f"{i:032x}"


def test_a_record_survives_the_journal_field_for_field(tmp_path: Path) -> None:
    table = JobTable()
    table.add(job_id(1), UPLOAD)
    record = table.start_run(job_id(1), REQUEST, client="key:abc")
    table.report_progress(job_id(1), 1, Stage.SHAPE_GENERATION, 0.5)
    result = RunResult(
        artifact_key="b" * 64,
        formats=("stl",),
        generator="inflate",
        generator_version="v1",
        timings={"export": 0.25},
    )
    table.complete(job_id(1), 1, result)
    copy = decode_record(encode_record(record))
    assert copy == record

    journal = JobJournal(tmp_path / "j.sqlite3")
    journal.save(record)
    reopened = JobJournal(tmp_path / "j.sqlite3")  # as a restarted registry would
    assert reopened.load_all() == [record]
    assert reopened.load(job_id(1)) == record and reopened.load(job_id(2)) is None


def test_the_journal_keeps_the_latest_state_and_creation_order(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "j.sqlite3")
    table = JobTable()
    for i in range(3):
        journal.save(table.add(job_id(i), UPLOAD))
    journal.save(table.start_run(job_id(0), REQUEST))  # the oldest job changes last
    loaded = journal.load_all()
    assert [r.job_id for r in loaded] == [job_id(0), job_id(1), job_id(2)]
    assert loaded[0].status is JobStatus.QUEUED and loaded[0].request == REQUEST
    journal.delete([job_id(1)])
    assert len(journal) == 2 and journal.job_ids() == {job_id(0), job_id(2)}


def test_a_corrupt_row_is_skipped_not_fatal(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "j.sqlite3")
    journal.save(JobTable().add(job_id(1), UPLOAD))
    journal._db.execute(
        "INSERT INTO jobs VALUES (?, 'uploaded', 0, ?, NULL, '{not json')", (job_id(2), "a" * 64)
    )
    assert [r.job_id for r in journal.load_all()] == [job_id(1)]


def test_a_save_is_on_disk_when_it_returns_and_readable_by_another_connection(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite3"
    journal = JobJournal(path)
    table = JobTable()
    record = table.add(job_id(1), UPLOAD, owner="key-a")
    journal.save(record)
    reader = sqlite3.connect(path)  # another process's view: committed, not buffered
    (status, owner) = reader.execute(
        "SELECT status, json_extract(data, '$.owner') FROM jobs WHERE job_id = ?", (job_id(1),)
    ).fetchone()
    assert (status, owner) == ("uploaded", "key-a")
    journal.save(table.start_run(job_id(1), REQUEST))
    assert reader.execute("SELECT status FROM jobs").fetchone() == ("queued",)
    assert journal.writes == 2


def test_the_journal_asks_for_ended_jobs_by_the_one_definition_of_active(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "j.sqlite3")
    table = JobTable()
    for i in range(3):
        journal.save(table.add(job_id(i), UPLOAD))
    journal.save(table.start_run(job_id(0), REQUEST))  # queued
    table.start_run(job_id(1), REQUEST)
    table.report_progress(job_id(1), 1, Stage.EXPORT, 0.5)
    journal.save(table.get(job_id(1)))  # running
    ended = journal.ended_before(time.time() + 1)
    assert ended == [job_id(2)]
    assert [row[0] for row in journal.ended_oldest_first()] == [job_id(2)]


def test_a_retry_is_a_new_run_so_the_lost_workers_reports_are_stale() -> None:
    table = JobTable()
    table.add(job_id(1), UPLOAD)
    table.start_run(job_id(1), REQUEST)
    table.report_progress(job_id(1), 1, Stage.SHAPE_GENERATION, 0.4)
    record = table.retry_run(job_id(1), 1)
    assert record is not None
    assert (record.status, record.run, record.retries, record.progress) == (
        JobStatus.QUEUED,
        2,
        1,
        0.0,
    )
    assert table.report_progress(job_id(1), 1, Stage.EXPORT, 0.9) is True  # stale: stop
    assert table.retry_run(job_id(1), 1) is None
    assert table.report_progress(job_id(1), 2, Stage.BACKGROUND_REMOVAL, 0.1) is False
    assert table.get(job_id(1)).status is JobStatus.RUNNING


def test_leases_wait_for_a_worker_then_expire_without_heartbeats() -> None:
    book = LeaseBook()
    book.grant(job_id(1), 1, wait_s=600, now=0)
    book.grant(job_id(2), 1, wait_s=600, now=0)
    assert len(book) == 2
    assert book.renew(job_id(1), 1, lease_s=10, now=5)  # the worker's first beat
    assert not book.renew(job_id(1), 0, lease_s=10, now=5)  # a stale run holds nothing
    assert book.expired(14) == []
    assert [lease.job_id for lease in book.expired(15)] == [job_id(1)]
    book.hand_over(job_id(1), 1, wait_s=600, now=14)  # waits for the next deployment
    assert book.expired(100) == []
    assert book.release(job_id(1), 2) is None and book.release(job_id(1), 1) is not None
    book.grant(job_id(2), 2, wait_s=600, now=0)  # a retry replaces the lease
    assert len(book) == 1 and [lease.run for lease in book.leases()] == [2]


def test_a_stall_of_the_registry_is_not_held_against_workers() -> None:
    book = LeaseBook()
    book.grant(job_id(1), 1, wait_s=600, now=0)
    book.renew(job_id(1), 1, lease_s=4, now=10)  # due at 14
    book.postpone(6.0)  # the registry could not run from 11 to 17
    assert book.expired(17) == []
    assert book.renew(job_id(1), 1, lease_s=4, now=17.1)  # the beat read once it runs again
    assert book.expired(21) == [] and len(book.expired(21.1)) == 1


def old(path: Path, age_s: float) -> None:
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))


def test_retention_removes_expired_jobs_and_only_the_files_no_one_else_uses(
    tmp_path: Path,
) -> None:
    store = ArtifactStore(tmp_path)
    journal = JobJournal(tmp_path / "registry" / "journal.sqlite3")
    table = JobTable()
    config = RetentionConfig(ttl_s=3600, grace_s=60)
    now = time.time()

    def finished(i: int, image: bytes, key: str, age_s: float) -> None:
        upload = store.put_upload(job_id(i), image, "image/png")
        record = table.add(job_id(i), upload)
        table.start_run(job_id(i), REQUEST)
        result = RunResult(key, ("stl",), "inflate", "v1")
        store.put_mesh(key, b"mesh")
        store.put_export(key, "stl", b"solid")
        table.complete(job_id(i), record.run, result)
        record.updated_at = now - age_s
        journal.save(record)

    finished(1, b"old image", "1" * 64, age_s=7200)  # expired, its files its own
    finished(2, b"shared image", "2" * 64, age_s=7200)  # expired, image shared with job 3
    finished(3, b"shared image", "3" * 64, age_s=10)  # recent
    active = table.add(job_id(4), store.put_upload(job_id(4), b"active image", "image/png"))
    table.start_run(job_id(4), REQUEST)
    active.updated_at = now - 7200  # old, but running: never touched
    journal.save(active)
    for path in tmp_path.rglob("*"):
        if path.is_file() and "registry" not in path.parts:
            old(path, 7200)

    scan = scan_store(store)
    expired = plan_expiry(journal, config, scan, now)
    assert sorted(expired) == [job_id(1), job_id(2)]
    refs = journal.refs_of(expired)
    journal.delete(expired)
    uploads, keys = journal.references()
    done = sweep(tmp_path, scan, expired, refs, (journal.job_ids(), uploads, keys), config, now)

    assert not store.has_mesh("1" * 64) and not store.has_mesh("2" * 64)
    assert not store.export_path("1" * 64, "stl").exists()
    assert store.has_mesh("3" * 64)
    assert store.job_upload(job_id(1)) is None and store.job_upload(job_id(2)) is None
    assert store.read_upload(store.job_upload(job_id(3)).sha256) == b"shared image"  # type: ignore[union-attr]
    assert store.read_upload(active.upload.sha256) == b"active image"
    assert store.job_upload(job_id(4)) is not None
    with pytest.raises(Exception, match="no longer stored"):
        store.read_upload(table.get(job_id(1)).upload.sha256)
    assert done.jobs == 2 and done.files == 5  # 1 upload + 2 meshes + 2 exports


def test_the_disk_budget_expires_the_oldest_ended_jobs_first(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    journal = JobJournal(tmp_path / "registry" / "journal.sqlite3")
    table = JobTable()
    now = time.time()
    for i in range(4):
        upload = store.put_upload(job_id(i), bytes([i]) * 1000, "image/png")
        record = table.add(job_id(i), upload)
        record.updated_at = now - 100 * (4 - i)  # job 0 is the oldest
        journal.save(record)
    config = RetentionConfig(ttl_s=None, max_bytes=2500, grace_s=0)
    scan = scan_store(store)
    assert scan.total_bytes == 4000
    assert plan_expiry(journal, config, scan, now) == [job_id(0), job_id(1)]


def test_a_young_unreferenced_file_is_kept_for_its_grace_period(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    path = store.put_mesh("9" * 64, b"in flight")  # written before its job records it
    config = RetentionConfig(ttl_s=1, grace_s=600)
    done = sweep(
        tmp_path, scan_store(store), [], {"9" * 64}, (set(), set(), set()), config, time.time() + 5
    )
    assert done.files == 0 and path.exists()
