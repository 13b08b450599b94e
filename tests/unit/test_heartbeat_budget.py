"""Heartbeats within the registry's budget: with many workers holding leases, each is asked
to beat less often, and its lease lasts as many more beats (no Ray: the registry in-process)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from serve_app.config import AppConfig
from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.params import GenerationParams
from serve_app.contracts.runs import RunRequest, UploadInfo
from serve_app.contracts.stages import Stage
from serve_app.registry.actor import JobRegistry
from serve_app.registry.leases import LeaseBook
from serve_app.registry.supervisor import LEASE_BEATS
from tests.serving import app_args

REQUEST = RunRequest(params=GenerationParams(quality=2), format="glb", generator="inflate")


def job_id(i: int) -> str:
    return f"{i:032x}"


def test_the_lease_book_counts_the_leases_workers_hold() -> None:
    book = LeaseBook()
    for i in range(3):
        book.grant(job_id(i), 1, wait_s=600, now=0)
    assert book.held == 0  # queued runs do not beat
    book.renew(job_id(0), 1, lease_s=10, now=1)
    book.renew(job_id(0), 1, lease_s=10, now=2)  # the same worker again
    book.renew(job_id(1), 1, lease_s=10, now=2)
    assert book.held == 2
    book.hand_over(job_id(1), 1, wait_s=600, now=3)  # waits for the next deployment
    assert book.held == 1
    book.grant(job_id(0), 2, wait_s=600, now=4)  # a retry replaces the held lease
    assert book.held == 0
    book.renew(job_id(2), 1, lease_s=10, now=5)
    book.release(job_id(2), 1)
    assert book.held == 0 and len(book) == 2


def test_workers_beat_less_often_when_more_hold_leases_than_the_budget_allows(
    tmp_path: Path,
) -> None:
    args = app_args(tmp_path)
    # 0.25 s beats and 8 beats a second: up to 2 workers beat at the configured interval.
    args["registry"] = {"heartbeat_interval_s": 0.25, "heartbeat_budget_per_s": 8.0}
    config = AppConfig.model_validate(args)

    async def scenario() -> None:
        registry = JobRegistry(config)
        supervisor = registry._supervisor
        intervals = []
        for i in range(6):
            upload = UploadInfo(sha256=f"{i:064x}", size_bytes=3, media_type="image/png")
            await registry.register_upload(job_id(i), upload)
            record = registry._table.start_run(job_id(i), REQUEST, None)
            supervisor.leases.grant(job_id(i), record.run, 600, 0)
        for i in range(6):
            beat = await registry.heartbeat(job_id(i), 1, Stage.SHAPE_GENERATION, 0.1)
            assert beat.stop is False
            intervals.append(beat.interval_s)
        # 1 and 2 held leases: the configured interval; then held / budget.
        assert intervals == [0.25, 0.25, 0.375, 0.5, 0.625, 0.75]
        assert registry._table.get(job_id(0)).status is JobStatus.RUNNING
        assert supervisor.leases.held == 6
        await registry.cancel(job_id(5))
        stop = await registry.heartbeat(job_id(5), 1, Stage.SHAPE_GENERATION, 0.2)
        assert stop.stop is True  # a cancel is heard at the next beat, however spaced
        await registry.stop()

    asyncio.run(scenario())


def test_a_lease_outlasts_four_of_the_beats_asked_for(tmp_path: Path) -> None:
    args = app_args(tmp_path)
    # One beat a second for the whole service and 2 s leases: the n-th worker to hold a
    # lease is asked to beat every n s, and its lease lasts 4 n s.
    args["registry"] = {
        "heartbeat_interval_s": 0.25,
        "heartbeat_budget_per_s": 1.0,
        "lease_s": 2.0,
    }
    config = AppConfig.model_validate(args)

    async def scenario() -> None:
        registry = JobRegistry(config)
        leases = registry._supervisor.leases
        before = time.monotonic()
        intervals = []
        for i in range(4):
            upload = UploadInfo(sha256=f"{i:064x}", size_bytes=3, media_type="image/png")
            await registry.register_upload(job_id(i), upload)
            record = registry._table.start_run(job_id(i), REQUEST, None)
            leases.grant(job_id(i), record.run, 600, before)
            beat = await registry.heartbeat(job_id(i), 1, Stage.SHAPE_GENERATION, 0.1)
            intervals.append(beat.interval_s)
        assert intervals == [1.0, 2.0, 3.0, 4.0]
        assert LEASE_BEATS == 4
        # Leases of 4, 8, 12 and 16 s from beats sent after ``before``.
        assert {lease.job_id for lease in leases.expired(before + 11.9)} <= {job_id(0), job_id(1)}
        assert job_id(3) not in {lease.job_id for lease in leases.expired(before + 15.9)}
        await registry.stop()

    asyncio.run(scenario())
