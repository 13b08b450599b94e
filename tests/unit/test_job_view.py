"""Status from each ingress replica's job view, fed by the registry's change feed (no Ray)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from serve_app.api.job_updates import job_updates
from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.params import GenerationParams
from serve_app.contracts.runs import RunRequest, RunResult, UploadInfo
from serve_app.contracts.stages import MODEL_STAGES
from serve_app.metrics import MetricsSink
from serve_app.registry.actor import JobRegistry
from serve_app.registry.jobs import EVERYONE
from serve_app.registry.view import JobView
from tests.unit.inprocess import (
    ManualClock,
    app_config,
    in_process_client,
    in_process_service,
)

JOB = "0" * 31 + "1"
UPLOAD = UploadInfo(sha256="ab" * 32, size_bytes=1234, media_type="image/png")
REQUEST = RunRequest(params=GenerationParams(quality=2), format="glb", generator="inflate")


def test_status_and_lists_are_read_from_the_view_not_the_registry(tmp_path: Path) -> None:
    with in_process_service(app_config(tmp_path)) as service:
        job_id = service.upload()
        before = service.calls()
        for _ in range(50):
            response = service.http.get(f"/api/job-status/{job_id}")
            assert response.status_code == 200 and response.json()["status"] == "uploaded"
        for _ in range(10):
            assert service.http.get("/api/jobs").json()["jobs"][0]["job_id"] == job_id
        after = service.calls()
        reads = ("get", "list_jobs", "sync", "job_log")
        assert {m: after.get(m, 0) - before.get(m, 0) for m in reads} == dict.fromkeys(reads, 0)


def test_the_replica_that_made_a_change_reads_it_back_at_once(tmp_path: Path) -> None:
    with in_process_service(app_config(tmp_path)) as service:
        service.run(service.view.stop)  # no feed from here on: only the replica's own writes
        job_id = service.upload()
        assert service.http.get(f"/api/job-status/{job_id}").json()["status"] == "uploaded"
        service.complete_from_cache(job_id, quality=2)
        accepted = service.http.post("/api/generate-3d", json={"job_id": job_id, "quality": 2})
        assert accepted.status_code == 202
        status = service.http.get(f"/api/job-status/{job_id}").json()
        assert (status["status"], status["run"]) == ("queued", 1)  # what the 202 said


def test_a_change_made_through_another_replica_arrives_through_the_feed(tmp_path: Path) -> None:
    with in_process_service(app_config(tmp_path)) as service:
        other = JobView(in_process_client(service.registry), staleness_s=2.0)
        service.run(_start(other))
        job_id = service.upload()
        service.complete_from_cache(job_id)
        assert service.http.post("/api/generate-3d", json={"job_id": job_id}).status_code == 202
        seen: list[JobStatus] = []

        def completed() -> bool:
            job = other.peek(job_id)
            if job is not None and (not seen or seen[-1] is not job.status):
                seen.append(job.status)
            return job is not None and job.status is JobStatus.COMPLETED

        service.wait_view(completed)
        assert seen[-1] is JobStatus.COMPLETED and other.fresh
        job = service.run(_read(other, job_id))
        assert job.result is not None and job.result.cached
        service.run(other.stop)


def test_a_stale_view_asks_the_registry_instead(tmp_path: Path) -> None:
    config = app_config(tmp_path, registry={"status_staleness_s": 0.2})
    clock = ManualClock()
    with in_process_service(config, clock) as service:
        job_id = service.upload()
        service.run(service.view.stop)  # the feed is lost
        clock.advance(0.3)
        assert not service.view.fresh
        before = service.calls().get("get", 0)
        assert service.http.get(f"/api/job-status/{job_id}").status_code == 200
        assert service.http.get("/api/jobs").json()["total"] == 1
        after = service.calls()
        assert after.get("get", 0) == before + 1 and after.get("list_jobs", 0) >= 1


def test_a_view_reloads_when_the_registry_restarts(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = app_config(tmp_path)
        first = JobRegistry(config, MetricsSink())
        first.start()
        await first.register_upload(JOB, UPLOAD)
        view = JobView(in_process_client(first), staleness_s=2.0)
        view.start()
        while not view.fresh:
            await asyncio.sleep(0.01)
        assert (await view.get(JOB, EVERYONE)).status is JobStatus.UPLOADED
        old_version = (await view.get(JOB, EVERYONE)).version
        await view.stop()
        await first.stop()

        second = JobRegistry(config, MetricsSink())  # the same journal: a restarted registry
        second.start()
        other = "0" * 31 + "2"
        await second.register_upload(other, UPLOAD)
        view._source = in_process_client(second)  # the same actor handle, a new process
        view.start()
        while view.peek(other) is None:
            await asyncio.sleep(0.01)
        assert (await view.get(JOB, EVERYONE)).version == old_version  # unchanged since
        assert len(view) == 2
        await view.stop()
        await second.stop()

    asyncio.run(scenario())


def test_streams_see_every_change_once_in_order_from_the_view(tmp_path: Path) -> None:
    async def scenario() -> None:
        registry = JobRegistry(app_config(tmp_path), MetricsSink())
        registry.start()
        view = JobView(in_process_client(registry), staleness_s=2.0)
        await registry.register_upload(JOB, UPLOAD)
        view.start()
        while not view.fresh:
            await asyncio.sleep(0.005)
        table, monitor = registry._table, registry._monitor

        async def stream() -> list[tuple[str, str | None]]:
            first = await view.get(JOB, EVERYONE)
            seen = []
            async for update in job_updates(view, first, keepalive_s=5.0):
                assert update is not None
                seen.append((update[1]["status"], update[1]["stage"]))
            return seen

        streams = [asyncio.create_task(stream()) for _ in range(3)]
        await asyncio.sleep(0.01)
        record = table.start_run(JOB, REQUEST)
        monitor.changed(record)
        for stage in MODEL_STAGES:
            await asyncio.sleep(0.005)
            table.report_progress(JOB, record.run, stage, 0.5)
            monitor.changed(record)
        late = asyncio.create_task(stream())  # joins mid-run
        await asyncio.sleep(0.005)
        table.complete(JOB, record.run, RunResult("k" * 64, ("glb",), "inflate", "inflate-1"))
        monitor.changed(record)

        expected = [("uploaded", None), ("queued", None)]
        expected += [("running", str(stage)) for stage in MODEL_STAGES] + [("completed", "export")]
        for seen in await asyncio.gather(*streams):
            assert seen == expected
        assert (await late)[-2:] == expected[-2:]
        calls = await registry.served_calls()
        assert calls.get("get", 0) == 0  # the streams read the view, never the registry
        await view.stop()
        await registry.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("limit", [1, 3])
def test_pages_of_the_view_are_newest_first(tmp_path: Path, limit: int) -> None:
    with in_process_service(app_config(tmp_path)) as service:
        ids = [service.upload() for _ in range(4)]
        page = service.http.get("/api/jobs", params={"limit": limit, "offset": 1}).json()
        assert [j["job_id"] for j in page["jobs"]] == ids[::-1][1 : 1 + limit]
        assert page["total"] == 4
        queued = service.http.get("/api/jobs", params={"status": "queued"}).json()
        assert queued["total"] == 0


def _start(view: JobView):  # type: ignore[no-untyped-def]
    async def start() -> None:
        view.start()

    return start


def _read(view: JobView, job_id: str):  # type: ignore[no-untyped-def]
    async def read():  # type: ignore[no-untyped-def]
        return await view.get(job_id, EVERYONE)

    return read


def test_every_replica_lists_jobs_in_the_same_order(tmp_path: Path) -> None:
    """A replica applies its own writes before the feed brings the others' earlier ones;
    its pages still come out in the order of every other replica (creation, newest first).
    """

    async def scenario() -> None:
        registry = JobRegistry(app_config(tmp_path), MetricsSink())
        registry.start()
        ids = [f"{i:032x}" for i in range(5)]
        views = [JobView(in_process_client(registry), staleness_s=2.0) for _ in range(2)]
        for job_id in ids:
            answer = await registry.register_upload(job_id, UPLOAD)
            if job_id in ids[3:]:
                views[0].apply(answer)  # this replica made these two: it knows them first
        for view in views:
            view.start()
        while not all(view.fresh and len(view) == 5 for view in views):
            await asyncio.sleep(0.01)
        pages = [
            [
                j.job_id
                for offset in (0, 2, 4)
                for j in (await view.page(offset, 2, None, EVERYONE)).jobs
            ]
            for view in views
        ]
        assert pages[0] == pages[1] == ids[::-1]
        for view in views:
            await view.stop()
        await registry.stop()

    asyncio.run(scenario())


def test_a_status_body_is_rendered_once_per_snapshot() -> None:
    import dataclasses
    import json

    from serve_app.api.responses import StatusBodies, job_status
    from serve_app.registry.jobs import JobRecord

    bodies = StatusBodies(size=2)
    job = JobRecord(job_id=JOB, upload=UPLOAD).snapshot()
    body = bodies.body(job)
    assert bodies.body(job) is body  # the same snapshot: not rendered again
    assert json.loads(body) == job_status(job).model_dump(mode="json")
    changed = dataclasses.replace(job, status=JobStatus.QUEUED, version=job.version + 1)
    assert json.loads(bodies.body(changed))["status"] == "queued"
    for i in range(3):
        bodies.body(dataclasses.replace(job, job_id=f"{i:032x}"))
    assert len(bodies._bodies) == 2
