"""Text jobs in the registry, without Ray: plans and their bands, the table, the journal, the
job's log and ETA."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.params import GenerationParams
from serve_app.contracts.runs import RunRequest, RunResult, StoredImage, UploadInfo
from serve_app.contracts.stages import (
    MODEL_STAGES,
    PLAN_BANDS,
    STAGE_BANDS,
    TEXT_TO_IMAGE_SHARE,
    RunPlan,
    Stage,
    overall_progress,
)
from serve_app.contracts.text import TextToImageParams
from serve_app.errors import JobConflictError, NoSubjectError
from serve_app.pipeline.text_params import describe_prompt
from serve_app.registry.journal import JobJournal, decode_record, encode_record
from serve_app.registry.monitor import JobMonitor
from serve_app.registry.table import RUNNING_PROGRESS_CAP, JobTable

JOB = "0123456789abcdef0123456789abcdef"
PROMPT = "my neighbour Jane Doe's red mug"
TEXT = TextToImageParams(prompt=PROMPT, negative_prompt="blurry", seed=7, steps=4)
REQUEST = RunRequest(params=GenerationParams(quality=2), format="glb", generator="inflate")
PNG = UploadInfo(sha256="c" * 64, size_bytes=1234, media_type="image/png")
RESULT = RunResult("d" * 64, ("glb",), "inflate", "inflate-1")


def stored(cached: bool = False) -> StoredImage:
    made = TEXT.model_copy(update={"guidance_scale": 7.0, "width": 64, "height": 64})
    return StoredImage("e" * 64, PNG, made, "tiny-float32", cached, 0.5)


# -- plans and their bands -------------------------------------------------------------------


@pytest.mark.parametrize("plan", list(RunPlan))
def test_every_plan_s_bands_run_from_0_to_100_in_the_order_of_its_stages(plan: RunPlan) -> None:
    bands = PLAN_BANDS[plan]
    assert tuple(bands) == plan.stages
    edges = [bands[stage] for stage in plan.stages]
    assert edges[0][0] == 0.0 and edges[-1][1] == 100.0
    for (_, hi), (lo, _) in zip(edges, edges[1:], strict=False):
        assert hi == pytest.approx(lo)
    assert all(lo < hi for lo, hi in edges)


def test_text_to_model_makes_the_picture_first_and_rescales_the_model_stages() -> None:
    assert RunPlan.TEXT_TO_MODEL.stages == (Stage.TEXT_TO_IMAGE, *MODEL_STAGES)
    assert list(Stage)[0] is Stage.TEXT_TO_IMAGE  # the stage order the table keeps
    assert PLAN_BANDS[RunPlan.TEXT_TO_MODEL][Stage.TEXT_TO_IMAGE] == (0.0, TEXT_TO_IMAGE_SHARE)
    assert PLAN_BANDS[RunPlan.IMAGE][Stage.TEXT_TO_IMAGE] == (0.0, 100.0)
    assert PLAN_BANDS[RunPlan.MODEL] == STAGE_BANDS  # a model run is as before
    scale = (100.0 - TEXT_TO_IMAGE_SHARE) / 100.0
    for stage, (lo, hi) in STAGE_BANDS.items():
        text_lo, text_hi = PLAN_BANDS[RunPlan.TEXT_TO_MODEL][stage]
        assert text_lo == pytest.approx(TEXT_TO_IMAGE_SHARE + lo * scale)
        assert text_hi == pytest.approx(TEXT_TO_IMAGE_SHARE + hi * scale)
    with pytest.raises(KeyError):
        overall_progress(Stage.SHAPE_GENERATION, 0.5, RunPlan.IMAGE)


# -- the table --------------------------------------------------------------------------------


def test_a_text_to_model_run_goes_forward_through_five_stages_and_ends_at_100() -> None:
    table = JobTable()
    table.add_text(JOB, TEXT, owner="key-a")
    record = table.start_run(JOB, REQUEST, client="key:a", plan=RunPlan.TEXT_TO_MODEL)
    assert record.status is JobStatus.QUEUED and record.upload is None and record.dispatchable
    seen: list[float] = []
    for stage in RunPlan.TEXT_TO_MODEL.stages:
        for fraction in (0.0, 0.25, 0.5, 1.0):
            assert table.report_progress(JOB, 1, stage, fraction) is False
            seen.append(record.progress)
        if stage is Stage.TEXT_TO_IMAGE:
            assert record.progress == pytest.approx(TEXT_TO_IMAGE_SHARE)
            assert table.image_made(JOB, 1, stored()) is record
            assert record.upload == PNG
        table.report_progress(JOB, 1, Stage.TEXT_TO_IMAGE, 0.1)  # late: never backwards
        seen.append(record.progress)
    assert seen == sorted(seen) and max(seen) == RUNNING_PROGRESS_CAP < 100.0
    assert list(record.stage_durations) == [str(s) for s in RunPlan.TEXT_TO_MODEL.stages[:-1]]
    table.complete(JOB, 1, RESULT)
    assert record.status is JobStatus.COMPLETED and record.progress == 100.0
    assert record.stage is Stage.EXPORT and list(record.stage_durations)[-1] == "export"


def test_a_picture_alone_completes_without_a_model_and_is_then_modelled_as_an_upload() -> None:
    table = JobTable()
    table.add_text(JOB, TEXT)
    record = table.start_run(JOB, None, plan=RunPlan.IMAGE)
    assert table.report_progress(JOB, 1, Stage.SHAPE_GENERATION, 0.5) is False  # not its stage
    assert record.status is JobStatus.QUEUED and record.progress == 0.0
    table.report_progress(JOB, 1, Stage.TEXT_TO_IMAGE, 0.5)
    assert record.status is JobStatus.RUNNING and record.progress == 50.0
    table.image_made(JOB, 1, stored())
    table.complete(JOB, 1, None)
    assert record.status is JobStatus.COMPLETED and record.result is None
    assert record.stage is Stage.TEXT_TO_IMAGE and record.progress == 100.0

    again = table.start_run(JOB, REQUEST)  # generate-3d on the job: a model run of its picture
    assert (again.run, again.plan, again.upload, again.text) == (2, RunPlan.MODEL, PNG, TEXT)
    assert again.image == stored() and again.dispatchable
    assert table.report_progress(JOB, 2, Stage.BACKGROUND_REMOVAL, 1.0) is False
    assert again.progress == STAGE_BANDS[Stage.BACKGROUND_REMOVAL][1]


def test_a_text_job_without_its_picture_cannot_be_modelled() -> None:
    table = JobTable()
    table.add_text(JOB, TEXT)
    table.start_run(JOB, None, plan=RunPlan.IMAGE)
    table.report_progress(JOB, 1, Stage.TEXT_TO_IMAGE, 0.5)
    table.fail(JOB, 1, NoSubjectError("refused"))
    with pytest.raises(JobConflictError, match="no picture to model"):
        table.start_run(JOB, REQUEST)
    with pytest.raises(ValueError):
        table.start_run(JOB, None, plan=RunPlan.TEXT_TO_MODEL)  # a model run needs its request


def test_a_failed_run_s_error_names_the_stage_it_ended_in() -> None:
    table = JobTable()
    table.add_text(JOB, TEXT)
    table.start_run(JOB, REQUEST, plan=RunPlan.TEXT_TO_MODEL)
    table.report_progress(JOB, 1, Stage.TEXT_TO_IMAGE, 1.0)
    table.image_made(JOB, 1, stored())
    table.report_progress(JOB, 1, Stage.BACKGROUND_REMOVAL, 0.0)
    record = table.fail(JOB, 1, NoSubjectError("no subject was found in the image"))
    assert record is not None and record.status is JobStatus.FAILED
    assert record.error == {
        "code": "no_subject",
        "message": "no subject was found in the image",
        "stage": "background_removal",
    }
    # A stage that raised says so itself; the table keeps that.
    table.start_run(JOB, REQUEST)
    table.report_progress(JOB, 2, Stage.SHAPE_GENERATION, 0.0)
    record = table.fail(JOB, 2, NoSubjectError("thin", stage="texture_synthesis"))
    assert record is not None and record.error is not None
    assert record.error["stage"] == "texture_synthesis"


def test_a_text_job_survives_the_journal_field_for_field(tmp_path: Path) -> None:
    table = JobTable()
    table.add_text(JOB, TEXT, owner="key-a")
    record = table.start_run(JOB, REQUEST, plan=RunPlan.TEXT_TO_MODEL)
    assert decode_record(encode_record(record)) == record  # no picture yet
    table.image_made(JOB, 1, stored(cached=True))
    journal = JobJournal(tmp_path / "j.sqlite3")
    journal.save(record)
    copy = JobJournal(tmp_path / "j.sqlite3").load(JOB)
    assert copy == record and copy is not None
    assert copy.plan is RunPlan.TEXT_TO_MODEL and copy.text == TEXT and copy.image == stored(True)
    assert journal.references()[0] == {PNG.sha256}


def test_a_prompt_shows_nowhere_in_full() -> None:
    assert PROMPT not in repr(TEXT) and "blurry" not in repr(TEXT)
    assert PROMPT not in repr(stored())
    table = JobTable()
    monitor = JobMonitor(table)
    table.add_text(JOB, TEXT)
    record = table.start_run(JOB, REQUEST, plan=RunPlan.TEXT_TO_MODEL)
    monitor.changed(record)
    assert PROMPT not in repr(monitor.snapshot(record))
    table.report_progress(JOB, 1, Stage.TEXT_TO_IMAGE, 1.0)
    table.image_made(JOB, 1, stored())
    monitor.image_made(record)
    lines = [f"{e.event}: {e.message}" for e in monitor.read_log(JOB).entries]
    queued = next(line for line in lines if line.startswith("queued"))
    assert describe_prompt(PROMPT) in queued and "seed 7, 4 steps" in queued
    assert queued.endswith("then glb, quality 2, generator inflate")
    made = next(line for line in lines if line.startswith("image_made"))
    assert "64x64 px, seed 7, 4 steps" in made and "tiny-float32" in made
    assert not any("Jane" in line or "blurry" in line for line in lines)


def test_the_eta_of_a_text_run_covers_the_picture_and_the_model() -> None:
    table = JobTable()
    monitor = JobMonitor(table)
    table.add_text(JOB, TEXT)
    record = table.start_run(JOB, REQUEST, plan=RunPlan.TEXT_TO_MODEL)
    monitor.changed(record)
    picture = monitor.images.expected(4)
    model = monitor.clock.total("inflate", 2)
    assert picture == pytest.approx(5 * monitor.images.seconds_per_step)
    assert monitor.snapshot(record).eta_seconds == pytest.approx(picture + model, abs=0.01)

    started = record.stage_started_at or 0.0
    table.report_progress(JOB, 1, Stage.TEXT_TO_IMAGE, 0.5)
    now = (record.stage_started_at or started) + 2.0  # half the steps took 2 s
    assert monitor.eta(record, now) == pytest.approx(2.0 + model, abs=0.01)

    monitor.images.observe(seconds=5.0, steps=4)
    assert monitor.images.seconds_per_step == pytest.approx(0.5 + 0.8 * (1.0 - 0.5))
    assert monitor.images.samples == 1
