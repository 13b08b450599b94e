"""The registry's live bookkeeping without Ray: ETA, feeds, logs, metrics and the monitor."""

from __future__ import annotations

import asyncio
import time

import pytest

from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.params import GenerationParams
from serve_app.contracts.runs import RunRequest, RunResult, UploadInfo
from serve_app.contracts.stages import MODEL_STAGES, Stage
from serve_app.errors import JobConflictError
from serve_app.metrics import (
    JOBS_COMPLETED,
    JOBS_SUBMITTED,
    STAGE_SECONDS,
    UPLOAD_BYTES,
    render_prometheus,
)
from serve_app.registry.eta import StageClock, seed_seconds
from serve_app.registry.feeds import ChangeFeed, JobLogs
from serve_app.registry.jobs import JobRecord
from serve_app.registry.monitor import JobMonitor
from serve_app.registry.table import JobTable

JOB = "0" * 31 + "1"
OTHER = "0" * 31 + "2"
UPLOAD = UploadInfo(sha256="ab" * 32, size_bytes=1234, media_type="image/png")


def request(quality: int = 5) -> RunRequest:
    return RunRequest(params=GenerationParams(quality=quality), format="glb", generator="inflate")


def table_and_monitor() -> tuple[JobTable, JobMonitor]:
    table = JobTable()
    return table, JobMonitor(table)


def run_all_stages(table: JobTable, monitor: JobMonitor, job_id: str, run: int) -> None:
    for stage in MODEL_STAGES:
        for fraction in (0.0, 1.0):
            table.report_progress(job_id, run, stage, fraction)
            monitor.changed(table.get(job_id))


# -- ETA ------------------------------------------------------------------------------


def test_stage_clock_starts_from_the_benchmark_and_follows_measurements() -> None:
    clock = StageClock()
    assert clock.expected("inflate", 10, Stage.SHAPE_GENERATION) == seed_seconds(
        Stage.SHAPE_GENERATION, 10
    )
    assert clock.total("inflate", 10) > clock.total("inflate", 1)
    for _ in range(20):
        clock.observe("inflate", 10, {"shape_generation": 3.0, "not_a_stage": 1.0})
    assert clock.expected("inflate", 10, Stage.SHAPE_GENERATION) == pytest.approx(3.0, rel=0.01)
    assert clock.samples("inflate", 10, Stage.SHAPE_GENERATION) == 20
    # Other qualities and generators keep their own figures.
    assert clock.expected("inflate", 9, Stage.SHAPE_GENERATION) == seed_seconds(
        Stage.SHAPE_GENERATION, 9
    )


def test_remaining_time_shrinks_through_a_run() -> None:
    clock = StageClock()
    before = clock.remaining("inflate", 5, None, 0.0, 0.0)
    start = clock.remaining("inflate", 5, Stage.BACKGROUND_REMOVAL, 0.0, 0.0)
    middle = clock.remaining("inflate", 5, Stage.SHAPE_GENERATION, 0.5, 0.0)
    end = clock.remaining("inflate", 5, Stage.EXPORT, 1.0, 10.0)
    assert before == pytest.approx(clock.total("inflate", 5))
    assert before >= start > middle > end == 0.0


# -- feeds ----------------------------------------------------------------------------


def test_the_change_feed_wakes_every_reader_and_replays_what_it_missed() -> None:
    async def scenario() -> None:
        feed = ChangeFeed(kept=4)
        start = feed.seq
        snap = JobRecord(job_id=JOB, upload=UPLOAD).snapshot()
        readers = [asyncio.create_task(feed.read(feed.epoch, start, 5.0)) for _ in range(3)]
        await asyncio.sleep(0.01)
        published = feed.publish(JOB, snap)
        assert published is not None and published.version == start + 1
        for reply in await asyncio.gather(*readers):
            assert [c.snapshot for c in reply.changes] == [published] and reply.complete
            assert reply.seq == start + 1 and not reply.reset
        quiet = await feed.read(feed.epoch, start + 1, 0.01)  # nothing new: an empty answer
        assert quiet.changes == () and quiet.seq == start + 1
        for _ in range(3):
            feed.publish(OTHER, None)  # OTHER forgotten (three times, to fill the ring)
        batch = await feed.read(feed.epoch, start + 1, 0.0, limit=2)
        assert [c.seq for c in batch.changes] == [start + 2, start + 3] and not batch.complete
        assert (await feed.read(feed.epoch, start, 0.0)).changes[0].job_id == JOB
        feed.publish(JOB, snap)  # the ring keeps 4: position start + 1 is gone
        assert (await feed.read(feed.epoch, start, 0.0)).reset  # fell behind: list again
        assert (await feed.read("another registry", feed.seq, 0.0)).reset

    asyncio.run(scenario())


def test_versions_keep_growing_when_the_registry_restarts() -> None:
    snap = JobRecord(job_id=JOB, upload=UPLOAD).snapshot()
    started_ns = 1_800_000_000 * 10**9
    first = ChangeFeed(clock=lambda: started_ns)  # positions start at the start time in µs
    old = [first.publish(JOB, snap) for _ in range(3)][-1]
    # A restart takes longer than a microsecond per change made: here one millisecond.
    second = ChangeFeed(clock=lambda: started_ns + 10**6)
    new = second.publish(JOB, snap)
    assert old is not None and new is not None and new.version > old.version
    assert first.epoch != second.epoch


def test_a_job_log_is_bounded_and_counts_what_it_dropped() -> None:
    logs = JobLogs(size=5)
    for i in range(12):
        logs.log(JOB, 1, "note", f"line {i}")
    log = logs.read(JOB)
    assert [e.message for e in log.entries] == [f"line {i}" for i in range(7, 12)]
    assert log.dropped == 7
    logs.forget([JOB])
    assert logs.read(JOB).entries == ()


# -- the job table's stage timing and cancel ----------------------------------------------


def test_stages_only_move_forward_and_are_timed() -> None:
    table = JobTable()
    table.add(JOB, UPLOAD)
    run = table.start_run(JOB, request()).run
    table.report_progress(JOB, run, Stage.BACKGROUND_REMOVAL, 0.5)
    table.report_progress(JOB, run, Stage.SHAPE_GENERATION, 0.5)
    progress = table.get(JOB).progress
    table.report_progress(JOB, run, Stage.BACKGROUND_REMOVAL, 1.0)  # a late beat
    record = table.get(JOB)
    assert record.stage == "shape_generation" and record.progress == progress
    assert set(record.stage_durations) == {"background_removal"}


def test_cancel_ends_a_queued_run_flags_a_running_one_and_refuses_an_ended_one() -> None:
    table = JobTable()
    table.add(JOB, UPLOAD)
    with pytest.raises(JobConflictError):
        table.request_cancel(JOB)  # uploaded, never started
    run = table.start_run(JOB, request()).run
    record = table.request_cancel(JOB)
    assert record.status is JobStatus.CANCELLED and record.error["code"] == "cancelled"
    assert table.report_progress(JOB, run, Stage.BACKGROUND_REMOVAL, 0.0) is True
    with pytest.raises(JobConflictError):
        table.request_cancel(JOB)
    run = table.start_run(JOB, request()).run
    table.report_progress(JOB, run, Stage.BACKGROUND_REMOVAL, 0.0)
    assert table.request_cancel(JOB).status is JobStatus.RUNNING
    assert table.report_progress(JOB, run, Stage.BACKGROUND_REMOVAL, 0.5) is True


# -- the monitor -----------------------------------------------------------------------


def test_the_monitor_counts_logs_and_learns_from_a_completed_run() -> None:
    table, monitor = table_and_monitor()
    monitor.uploaded(table.add(JOB, UPLOAD))
    record = table.start_run(JOB, request(quality=3))
    monitor.changed(record)
    assert monitor.snapshot(record).queue_position == 1
    assert monitor.snapshot(record).eta_seconds == pytest.approx(
        monitor.clock.total("inflate", 3), abs=0.01
    )
    run_all_stages(table, monitor, JOB, record.run)
    table.complete(JOB, record.run, RunResult("k", ("glb",), "inflate", "inflate-1"))
    monitor.changed(record)

    snap = monitor.snapshot(record)
    assert snap.status is JobStatus.COMPLETED and snap.eta_seconds == 0.0
    assert list(snap.stage_durations) == [str(s) for s in MODEL_STAGES]
    assert monitor.clock.samples("inflate", 3, Stage.EXPORT) == 1
    metrics = monitor.metrics_snapshot()
    assert metrics.values[JOBS_SUBMITTED.name][("inflate",)] == 1
    assert metrics.values[JOBS_COMPLETED.name][("inflate",)] == 1
    assert metrics.values[UPLOAD_BYTES.name][()] == 1234
    assert metrics.histograms[STAGE_SECONDS.name][("export", "inflate", "3")].count == 1
    events = [e.event for e in monitor.read_log(JOB).entries]
    assert events[:3] == ["uploaded", "queued", "started"]
    assert events.count("stage_started") == 4 and events.count("stage_finished") == 4
    assert events[-1] == "completed"


def test_queue_positions_move_up_and_readers_of_the_feed_hear_of_it() -> None:
    async def scenario() -> None:
        table, monitor = table_and_monitor()
        for job_id in (JOB, OTHER):
            monitor.uploaded(table.add(job_id, UPLOAD))
            monitor.changed(table.start_run(job_id, request()))
        second = table.get(OTHER)
        assert monitor.snapshot(second).queue_position == 2
        feed = monitor.feed
        waiting = asyncio.create_task(feed.read(feed.epoch, feed.seq, 5.0))
        await asyncio.sleep(0.01)
        table.report_progress(JOB, 1, Stage.BACKGROUND_REMOVAL, 0.0)
        monitor.changed(table.get(JOB))
        reply = await waiting
        moved = [c.snapshot for c in reply.changes if c.job_id == OTHER]
        assert [s.queue_position for s in moved if s is not None] == [1]
        assert monitor.snapshot(second).version == moved[-1].version  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_prometheus_text_has_every_family() -> None:
    table, monitor = table_and_monitor()
    monitor.uploaded(table.add(JOB, UPLOAD))
    monitor.changed(table.start_run(JOB, request()))
    body, content_type = render_prometheus(monitor.metrics_snapshot())
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert 'orfeas_jobs_submitted_total{generator="inflate"} 1.0' in text
    assert "orfeas_upload_bytes_total 1234.0" in text
    assert "orfeas_queue_depth 1.0" in text
    assert "# TYPE orfeas_stage_duration_seconds histogram" in text


def test_eta_of_a_running_job_counts_down() -> None:
    table, monitor = table_and_monitor()
    table.add(JOB, UPLOAD)
    record = table.start_run(JOB, request(quality=10))
    table.report_progress(JOB, record.run, Stage.SHAPE_GENERATION, 0.2)
    now = time.time()
    early = monitor.eta(record, now)
    later = monitor.eta(record, now + 0.3)
    assert early is not None and later is not None and early > later > 0


def test_eta_of_a_queued_job_counts_the_runs_ahead_of_it_shared_by_the_running_lanes() -> None:
    table, monitor = table_and_monitor()
    jobs = [f"{i:032x}" for i in range(1, 5)]
    for job_id in jobs:
        table.add(job_id, UPLOAD)
        monitor.changed(table.start_run(job_id, request(quality=10)))
    run_seconds = monitor.clock.total("inflate", 10)
    first, second, third, fourth = (table.get(job_id) for job_id in jobs)
    assert [monitor.snapshot(r).queue_position for r in (first, fourth)] == [1, 4]
    # Nothing running: one lane, the queued runs ahead one after another.
    now = time.time()
    assert monitor.eta(fourth, now) == pytest.approx(4 * run_seconds, abs=0.02)

    # Two runs start: two lanes, and what they have left is shared between them.
    for job_id, fraction in ((jobs[0], 0.5), (jobs[1], 0.1)):
        table.report_progress(job_id, 1, Stage.SHAPE_GENERATION, fraction)
        monitor.changed(table.get(job_id))
    assert monitor.snapshot(third).queue_position == 1
    assert monitor.snapshot(fourth).queue_position == 2
    now = time.time()
    left = monitor.eta(first, now) + monitor.eta(second, now)  # type: ignore[operator]
    assert 0 < left < 2 * run_seconds
    assert monitor.eta(third, now) == pytest.approx(left / 2 + run_seconds, abs=0.02)
    assert monitor.eta(fourth, now) == pytest.approx(
        (left + run_seconds) / 2 + run_seconds, abs=0.02
    )
    assert monitor.eta(second, now) < monitor.eta(third, now) < monitor.eta(fourth, now)  # type: ignore[operator]


def test_the_grafana_dashboard_queries_only_metrics_we_export() -> None:
    import json
    import re
    from pathlib import Path

    from serve_app.metrics import REPLICA_STAGE_SECONDS, SPECS

    text = (Path(__file__).resolve().parents[2] / "configs" / "grafana-dashboard.json").read_text()
    dashboard = json.loads(text)
    exported: set[str] = set()
    for spec in (*SPECS, REPLICA_STAGE_SECONDS):
        if spec.kind == "counter":
            exported.add(f"{spec.name}_total")
        elif spec.kind == "histogram":
            exported |= {f"{spec.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
        else:
            exported.add(spec.name)
    queried = set(re.findall(r"orfeas_[a-z_]+", text))
    assert queried and queried <= exported, queried - exported
    assert {p["type"] for p in dashboard["panels"]} >= {"timeseries", "stat", "row"}
