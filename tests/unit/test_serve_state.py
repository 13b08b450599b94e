"""The state the service is built on, without Ray: job transitions, the store, cache keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from serve_app.contracts.jobs import TRANSITIONS, JobStatus, check_job_id
from serve_app.contracts.params import Dimensions, GenerationParams
from serve_app.contracts.runs import RunRequest, RunResult, UploadInfo
from serve_app.contracts.stages import Stage
from serve_app.errors import (
    GenerationFailedError,
    JobCancelledError,
    JobConflictError,
    JobNotFoundError,
    ValidationFailedError,
)
from serve_app.pipeline.config import PipelineConfig
from serve_app.registry.cache import cache_key
from serve_app.registry.jobs import Viewer
from serve_app.registry.table import JobTable
from serve_app.storage import ArtifactStore

JOB = "0123456789abcdef0123456789abcdef"
UPLOAD = UploadInfo(sha256="a" * 64, size_bytes=3, media_type="image/png")
REQUEST = RunRequest(params=GenerationParams(), format="glb", generator="inflate")
RESULT = RunResult(
    artifact_key="b" * 64, formats=("glb",), generator="inflate", generator_version="inflate-1"
)


def test_every_status_has_its_transitions_and_ended_runs_may_run_again() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    for status, targets in TRANSITIONS.items():
        assert JobStatus.UPLOADED not in targets
        if status is JobStatus.UPLOADED or status.terminal:
            assert targets == {JobStatus.QUEUED}
    assert not TRANSITIONS[JobStatus.QUEUED] & {JobStatus.UPLOADED, JobStatus.QUEUED}


def test_a_run_goes_queued_running_completed_and_may_run_again() -> None:
    table = JobTable()
    table.add(JOB, UPLOAD)
    record = table.start_run(JOB, REQUEST)
    assert (record.status, record.run) == (JobStatus.QUEUED, 1)
    with pytest.raises(JobConflictError):
        table.start_run(JOB, REQUEST)
    assert table.report_progress(JOB, 1, Stage.SHAPE_GENERATION, 0.5) is False
    assert record.status is JobStatus.RUNNING and record.progress == 35.0
    table.report_progress(JOB, 1, Stage.BACKGROUND_REMOVAL, 1.0)
    assert record.progress == 35.0  # progress never goes back
    table.complete(JOB, 1, RESULT)
    assert record.status is JobStatus.COMPLETED and record.progress == 100.0
    assert table.start_run(JOB, REQUEST).run == 2
    assert table.complete(JOB, 1, RESULT) is None  # a stale run's report is ignored
    assert table.report_progress(JOB, 1, Stage.EXPORT, 1.0) is True  # and told to stop


def test_failures_and_cancellations_end_the_run() -> None:
    table = JobTable()
    table.add(JOB, UPLOAD)
    table.start_run(JOB, REQUEST)
    table.fail(JOB, 1, GenerationFailedError("none"))
    assert table.get(JOB).status is JobStatus.FAILED
    assert table.get(JOB).error == {"code": "generation_failed", "message": "none"}
    table.start_run(JOB, REQUEST)
    table.fail(JOB, 2, JobCancelledError("stop"))  # the error's type decides, not its text
    assert table.get(JOB).status is JobStatus.CANCELLED


def test_unknown_jobs_and_malformed_ids_are_refused() -> None:
    with pytest.raises(JobNotFoundError):
        JobTable().start_run(JOB, REQUEST)
    for bad in ("", "abc", JOB.upper(), JOB + "0", "../" + JOB[3:]):
        with pytest.raises(ValidationFailedError):
            check_job_id(bad)


def test_pages_are_newest_first_and_old_ended_jobs_are_evicted() -> None:
    table = JobTable(max_jobs=3)
    ids = [f"{i:032x}" for i in range(4)]
    table.add(ids[0], UPLOAD)
    table.start_run(ids[0], REQUEST)  # active: never evicted
    for job_id in ids[1:]:
        table.add(job_id, UPLOAD)
    assert table.evict() == [ids[1]]
    assert len(table) == 3 and ids[0] in table and ids[1] not in table
    page = table.page(offset=0, limit=2)
    assert [j.job_id for j in page.jobs] == [ids[3], ids[2]] and page.total == 3


def test_pages_show_a_key_only_its_own_jobs_and_an_admin_all() -> None:
    table = JobTable()
    mine, theirs, nobodys = (f"{i:032x}" for i in range(3))
    table.add(mine, UPLOAD, owner="key-a")
    table.add(theirs, UPLOAD, owner="key-b")
    table.add(nobodys, UPLOAD)  # uploaded before keys were configured
    a = Viewer(key_id="key-a", sees_all=False)
    assert [j.job_id for j in table.page(0, 10, viewer=a).jobs] == [mine]
    assert table.page(0, 10, viewer=a).total == 1
    admin = Viewer(key_id="key-z", sees_all=True)
    assert {j.job_id for j in table.page(0, 10, viewer=admin).jobs} == {mine, theirs, nobodys}
    assert not a.may_see(None) and not a.may_see("key-b") and a.may_see("key-a")


def test_the_count_per_status_follows_every_change() -> None:
    table = JobTable(max_jobs=2)
    ids = [f"{i:032x}" for i in range(4)]
    for job_id in ids:
        table.add(job_id, UPLOAD)
    table.start_run(ids[0], REQUEST)
    table.report_progress(ids[0], 1, Stage.BACKGROUND_REMOVAL, 0.1)
    table.start_run(ids[1], REQUEST)
    table.request_cancel(ids[1])
    table.start_run(ids[2], REQUEST)
    table.retry_run(ids[2], 1)
    table.evict()
    table.remove(ids[3])
    scanned = {s: sum(r.status is s for r in table) for s in JobStatus}
    assert table.counts() == scanned
    assert scanned[JobStatus.RUNNING] == 1 and scanned[JobStatus.QUEUED] == 1


def test_store_keys_uploads_by_hash_and_jobs_by_id(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    info = store.put_upload(JOB, b"\x89PNG data", "image/png")
    assert store.read_upload(info.sha256) == b"\x89PNG data"
    assert store.job_upload(JOB) == info
    assert store.job_upload("f" * 32) is None
    with pytest.raises(ValidationFailedError):
        store.put_upload("../escape", b"x", "image/png")
    with pytest.raises(ValueError):
        store.mesh_path("../../etc/passwd")
    with pytest.raises(ValueError):
        store.export_path("c" * 64, "exe")
    store.check_writable()


def test_cache_key_changes_with_every_input_that_changes_the_mesh() -> None:
    base = cache_key("a" * 64, GenerationParams(), "u2netp", "inflate", "inflate-1")
    assert base == cache_key("a" * 64, GenerationParams(), "u2netp", "inflate", "inflate-1")
    variants = [
        cache_key("b" * 64, GenerationParams(), "u2netp", "inflate", "inflate-1"),
        cache_key("a" * 64, GenerationParams(quality=6), "u2netp", "inflate", "inflate-1"),
        cache_key(
            "a" * 64,
            GenerationParams(dimensions=Dimensions(width=10.0)),
            "u2netp",
            "inflate",
            "inflate-1",
        ),
        cache_key("a" * 64, GenerationParams(), "u2netp", "inflate", "inflate-2"),
        cache_key("a" * 64, GenerationParams(), "u2netp", "inflate", "inflate-1", texture="t"),
    ]
    assert len({base, *variants}) == 6
    # How the model is textured is part of its key: a mirrored back is not a filled one.
    fill, mirror = (PipelineConfig(texture={"back": back}) for back in ("fill", "mirror"))
    assert fill.texture_version != mirror.texture_version


def test_the_ingress_imports_neither_torch_nor_trimesh() -> None:
    code = (
        "import sys, deployments.ingress, serve_app.app; "
        "heavy = {'torch', 'trimesh', 'onnxruntime'} & set(sys.modules); "
        "sys.exit(f'imported {heavy}' if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout
