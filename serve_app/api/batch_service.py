"""Batches: many photos (or jobs) run with one set of options, followed as one.

A batch takes up to ``MAX_BATCH`` photos (each checked like an upload) or the ids of
uploaded jobs, and admits each job like ``POST /api/generate-3d`` would: one refused job
(a bad photo, a full queue) does not sink the others, and says why. The batch is a
manifest in the ArtifactStore, written once before the answer (its owner and its jobs);
its state is always read from its jobs, which the registry journals, so a batch needs
nothing of the registry and outlives restarts of the registry and the ingress. Retention
removes the manifest once its jobs are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any, Literal

from fastapi.sse import ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from serve_app.api.deps import Services
from serve_app.api.job_service import run_request, submit_run, upload_photo
from serve_app.api.request_bodies import parse_json
from serve_app.api.sse import KEEPALIVE
from serve_app.contracts.jobs import ACTIVE_STATUSES, TERMINAL_STATUSES, JobStatus
from serve_app.contracts.runs import RunRequest
from serve_app.errors import (
    BatchNotFoundError,
    JobNotFoundError,
    OrfeasError,
    ValidationFailedError,
)
from serve_app.registry.jobs import JobSnapshot, Viewer
from serve_app.schemas.jobs import GenerateOptions
from serve_app.schemas.tools import (
    MAX_BATCH,
    BatchCreated,
    BatchEntry,
    BatchJob,
    BatchJobsRequest,
    BatchStatus,
)


class EntryState(StrEnum):
    """What a batch entry is besides a job's own status (``JobStatus``)."""

    #: No job was made: the photo was refused, or the job was not the caller's.
    REJECTED = "rejected"
    #: The job is gone (retention removed it).
    EXPIRED = "expired"


_ACTIVE = frozenset(str(s) for s in ACTIVE_STATUSES)
_ENDED = frozenset({str(s) for s in EntryState} | {str(s) for s in TERMINAL_STATUSES})


# -- making a batch ----------------------------------------------------------------------


async def photo_batch(
    services: Services,
    viewer: Viewer,
    images: list[UploadFile],
    raw_params: str,
    client: str | None,
) -> list[BatchEntry]:
    """Each photo checked and stored as a new job, then admitted with the options
    ``raw_params`` (JSON); 422 for no photo, too many or bad options."""
    if not images:
        raise ValidationFailedError("the multipart field `images` with photos is missing")
    if len(images) > MAX_BATCH:
        raise ValidationFailedError(
            f"a batch holds at most {MAX_BATCH} photos; {len(images)} were sent",
            limit=MAX_BATCH,
        )
    options = parse_json(GenerateOptions, raw_params or "{}", "params")
    run = run_request(options, services.config, ("params",))
    return [
        await _photo(services, viewer, index, image, run, client)
        for index, image in enumerate(images)
    ]


async def job_batch(
    services: Services, viewer: Viewer, body: BatchJobsRequest, client: str | None
) -> list[BatchEntry]:
    """Each uploaded job of ``body`` admitted with its options."""
    run = run_request(body.params, services.config, ("params",))
    return [
        await _admit(services, viewer, i, job_id, run, client)
        for i, job_id in enumerate(body.job_ids)
    ]


async def record(services: Services, viewer: Viewer, entries: list[BatchEntry]) -> BatchCreated:
    """Write the manifest of a new batch of ``entries``, owned by ``viewer``'s key."""
    batch_id = uuid.uuid4().hex
    manifest = {
        "batch_id": batch_id,
        "owner": viewer.key_id,
        "created_at": time.time(),
        "jobs": [e.model_dump(mode="json", exclude={"status"}) for e in entries],
    }
    await run_in_threadpool(services.store.put_batch, batch_id, manifest)
    return BatchCreated(batch_id=batch_id, jobs=entries)


async def _photo(
    services: Services,
    viewer: Viewer,
    index: int,
    image: UploadFile,
    run: RunRequest,
    client: str | None,
) -> BatchEntry:
    """Check and store one photo as a new job, then admit its run."""
    try:
        job = await upload_photo(services, image, viewer.key_id)
    except OrfeasError as exc:
        return BatchEntry(index=index, job_id=None, status=EntryState.REJECTED, error=exc.to_dict())
    return await _admit(services, viewer, index, job.job_id, run, client)


async def _admit(
    services: Services,
    viewer: Viewer,
    index: int,
    job_id: str,
    run: RunRequest,
    client: str | None,
) -> BatchEntry:
    """Submit one job's run as generate-3d would; a refusal is the entry's error."""
    try:
        job = await submit_run(services, viewer, job_id, run, client)
    except OrfeasError as exc:
        held = services.jobs.peek(job_id)
        status = str(held.status) if held is not None and viewer.may_see(held.owner) else None
        return BatchEntry(
            index=index,
            job_id=job_id if status else None,
            status=status or EntryState.REJECTED,
            error=exc.to_dict(),
        )
    return BatchEntry(index=index, job_id=job_id, status=str(job.status))


# -- reading a batch ---------------------------------------------------------------------


async def manifest_of(services: Services, viewer: Viewer, batch_id: str) -> dict[str, Any]:
    """The batch's manifest; 404 for an unknown batch or another key's."""
    manifest = await run_in_threadpool(services.store.read_batch, batch_id)
    if manifest is None or not viewer.may_see(manifest.get("owner")):
        raise BatchNotFoundError(f"no batch with id {batch_id}", batch_id=batch_id)
    return manifest


async def status_of(services: Services, viewer: Viewer, manifest: dict[str, Any]) -> BatchStatus:
    """The batch's status now, from its jobs."""
    jobs = [await _entry(services, viewer, entry) for entry in manifest["jobs"]]
    return summarize(manifest["batch_id"], float(manifest["created_at"]), jobs)


async def _entry(services: Services, viewer: Viewer, entry: dict[str, Any]) -> BatchJob:
    job_id, error = entry.get("job_id"), entry.get("error")
    if job_id is None:
        return BatchJob(
            index=entry["index"], job_id=None, status=EntryState.REJECTED, error=error, progress=0
        )
    try:
        job = await services.jobs.get(job_id, viewer)
    except JobNotFoundError:
        return BatchJob(index=entry["index"], job_id=job_id, status=EntryState.EXPIRED, progress=0)
    return batch_job(entry["index"], job, error)


def batch_job(index: int, job: JobSnapshot, admission_error: dict[str, Any] | None) -> BatchJob:
    """One job of a batch now; the error that kept it from starting, while it has not."""
    completed = job.status is JobStatus.COMPLETED
    request = job.request
    fmt = request.format if request else None
    error = job.error if job.error else (admission_error if job.run == 0 else None)
    return BatchJob(
        index=index,
        job_id=job.job_id,
        status=str(job.status),
        error=error,
        progress=100.0 if completed else job.progress,
        download_url=f"/download/{job.job_id}/{fmt}" if completed and fmt else None,
        thumbnail_url=f"/api/jobs/{job.job_id}/thumbnail" if completed else None,
    )


def summarize(batch_id: str, created_at: float, jobs: list[BatchJob]) -> BatchStatus:
    """The batch's status, progress and counts from its entries."""
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    active = any(j.status in _ACTIVE for j in jobs)
    completed = counts.get(str(JobStatus.COMPLETED), 0)
    status: Literal["running", "completed", "partial", "failed"]
    if active:
        status = "running"
    elif completed == len(jobs):
        status = "completed"
    else:
        status = "partial" if completed else "failed"
    parts = [100.0 if j.status in _ENDED else j.progress for j in jobs]
    progress = round(sum(parts) / len(parts), 1) if parts else 100.0
    return BatchStatus(
        batch_id=batch_id,
        status=status,
        progress=progress,
        counts=counts,
        jobs=jobs,
        created_at=created_at,
    )


async def batch_events(
    services: Services, viewer: Viewer, manifest: dict[str, Any], keepalive_s: float
) -> AsyncIterator[ServerSentEvent]:
    """The batch's status now, after each change of one of its jobs, and at its end."""
    job_ids = [e["job_id"] for e in manifest["jobs"] if e.get("job_id")]
    sent = None
    seq = 0
    with contextlib.ExitStack() as stack:
        queues = [stack.enter_context(services.jobs.listen(j)) for j in job_ids]
        while True:
            status = await status_of(services, viewer, manifest)
            body = status.model_dump_json()
            if body != sent:
                seq += 1
                sent = body
                yield ServerSentEvent(raw_data=body, id=str(seq))
            if status.status != "running":
                return
            if not await _any_change(queues, keepalive_s):
                yield KEEPALIVE


async def _any_change(queues: list[asyncio.Queue[Any]], timeout_s: float) -> bool:
    """Wait until one of ``queues`` has something (then empty them all); False on timeout."""
    if not any(q.qsize() for q in queues):
        waits = [asyncio.ensure_future(q.get()) for q in queues]
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout_s, return_when="FIRST_COMPLETED")
        finally:
            for w in waits:
                w.cancel()
        if not done:
            return False
    for q in queues:
        while not q.empty():
            q.get_nowait()
    return True
