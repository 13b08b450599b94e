"""Batches: many photos (or jobs) run with one set of options, followed as one.

``POST /api/batch-generate`` takes up to ``MAX_BATCH`` photos (multipart ``images``, each
checked like an upload) or the ids of uploaded jobs (JSON), and admits each job like
``POST /api/generate-3d`` would: one refused job (a bad photo, a full queue) does not sink
the others, and says why. The batch is a manifest in the ArtifactStore, written once
before the answer (its owner and its jobs); its state is always read from its jobs, which
the registry journals, so a batch needs nothing of the registry and outlives restarts of
the registry and the ingress. Retention removes the manifest once its jobs are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from serve_app.api.bodies import read_small_body
from serve_app.api.deps import Services, ServicesDep, ViewerDep
from serve_app.api.routes import MEDIA_TYPES, run_request
from serve_app.contracts.jobs import ACTIVE_STATUSES, JOB_ID_PATTERN, TERMINAL_STATUSES, JobStatus
from serve_app.contracts.runs import RunRequest
from serve_app.errors import (
    BatchNotFoundError,
    ImageTooLargeError,
    JobNotFoundError,
    OrfeasError,
    UnsupportedMediaTypeError,
    ValidationFailedError,
)
from serve_app.pipeline.images import check_image
from serve_app.registry.jobs import JobSnapshot, Viewer
from serve_app.schemas.jobs import ErrorResponse, GenerateOptions
from serve_app.schemas.tools import (
    MAX_BATCH,
    BatchCreated,
    BatchEntry,
    BatchJob,
    BatchJobsRequest,
    BatchStatus,
)

BATCH_PATH = "/api/batch-generate"
#: A JSON body here lists job ids; it is never large.
MAX_JSON_BYTES = 64 * 1024
KEEPALIVE_S = 10.0

router = APIRouter(
    tags=["batches"],
    responses={code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 415, 422, 429)},
)
BatchIdPath = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="32 lowercase hex")]

#: What an entry is besides a job's own status: no job was made, or it is gone.
REJECTED, EXPIRED = "rejected", "expired"
_ACTIVE = frozenset(str(s) for s in ACTIVE_STATUSES)
_ENDED = frozenset({REJECTED, EXPIRED} | {str(s) for s in TERMINAL_STATUSES})


_CREATED_EXAMPLE = {
    "batch_id": "7d1c2e9a0b3f4d5e8a6b1c2d3e4f5a6b",
    "jobs": [
        {"index": 0, "job_id": "3f2a9c0e5b7d4e1f8a6c2b9d0e4f7a1c", "status": "queued"},
        {"index": 1, "job_id": None, "status": "rejected", "error": {
            "code": "unsupported_media_type", "message": "not a PNG, JPEG or WebP image"}},
        {"index": 2, "job_id": "0b6e1d2c3a4f5e6d7c8b9a0f1e2d3c4b", "status": "uploaded",
         "error": {"code": "rate_limited", "message": "you have 50 jobs queued or running; "
                   "wait for one to end", "retry_after_s": 5}},
    ],
}  # fmt: skip
_BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["images"],
                    "properties": {
                        "images": {
                            "type": "array",
                            "maxItems": MAX_BATCH,
                            "items": {"type": "string", "format": "binary"},
                            "description": f"1 to {MAX_BATCH} PNG, JPEG or WebP photos",
                        },
                        "params": {
                            "type": "string",
                            "description": "JSON: generate-3d's options (format, quality, "
                            "dimensions, generator and its parameters)",
                            "example": '{"format": "stl", "quality": 3}',
                        },
                    },
                }
            },
            "application/json": {
                "schema": BatchJobsRequest.model_json_schema(),
                "example": {
                    "job_ids": ["3f2a9c0e5b7d4e1f8a6c2b9d0e4f7a1c"],
                    "params": {"format": "glb", "quality": 5},
                },
            },
        },
    },
    "responses": {"202": {"content": {"application/json": {"example": _CREATED_EXAMPLE}}}},
}


@router.post(BATCH_PATH, status_code=202, openapi_extra=_BATCH_BODY)
async def batch_generate(
    request: Request, services: ServicesDep, viewer: ViewerDep
) -> BatchCreated:
    """Run up to 16 photos (multipart ``images``, options in the JSON field ``params``) or
    uploaded jobs (JSON ``{"job_ids", "params"}``) with one set of options.

    Each photo is checked like an upload and each job admitted like a single generate-3d:
    a photo refused is ``rejected`` (no job), a job the queue refuses stays ``uploaded``
    (submit it again later); each says why in ``error``. 422 for bad options (which would
    refuse every job) or too many photos; 413 for a body over the limit.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    client = getattr(request.state, "client_id", None)
    if kind == "multipart/form-data":
        entries = await _photos(request, services, viewer, client)
    elif kind == "application/json":
        body = _jobs_request(await read_small_body(request, MAX_JSON_BYTES))
        run = run_request(body.params, services.config.pipeline, ("params",))
        entries = [
            await _admit(services, viewer, i, job_id, run, client)
            for i, job_id in enumerate(body.job_ids)
        ]
    else:
        raise UnsupportedMediaTypeError(
            "send multipart/form-data with photos in the field `images`, or "
            'application/json {"job_ids": [...], "params": {...}}'
        )
    batch_id = uuid.uuid4().hex
    manifest = {
        "batch_id": batch_id,
        "owner": viewer.key_id,
        "created_at": time.time(),
        "jobs": [e.model_dump(mode="json", exclude={"status"}) for e in entries],
    }
    await run_in_threadpool(services.store.put_batch, batch_id, manifest)
    return BatchCreated(batch_id=batch_id, jobs=entries)


@router.get("/api/batches/{batch_id}")
async def batch_status(
    batch_id: BatchIdPath, services: ServicesDep, viewer: ViewerDep
) -> BatchStatus:
    """The batch's status, progress, count per status and each job (404 unknown, or
    another key's batch)."""
    manifest = await _manifest(services, viewer, batch_id)
    return await _status(services, viewer, manifest)


@router.get(
    "/api/batches/{batch_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "batch events"}},
)
async def batch_events(
    batch_id: BatchIdPath,
    services: ServicesDep,
    viewer: ViewerDep,
    keepalive_s: Annotated[float, Query(ge=0.5, le=60.0)] = KEEPALIVE_S,
) -> StreamingResponse:
    """Server-Sent Events: the batch's status now (the body of ``GET
    /api/batches/{id}``), again whenever one of its jobs changes, and a last one once no
    job is queued or running; then the stream closes."""
    manifest = await _manifest(services, viewer, batch_id)  # 404 before the stream starts
    return StreamingResponse(
        _events(services, viewer, manifest, keepalive_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- making a batch ----------------------------------------------------------------------


async def _photos(
    request: Request, services: Services, viewer: Viewer, client: str | None
) -> list[BatchEntry]:
    form = await request.form(max_files=MAX_BATCH + 1, max_fields=4)  # malformed: a 400
    try:
        images = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
        if not images:
            raise ValidationFailedError("the multipart field `images` with photos is missing")
        if len(images) > MAX_BATCH:
            raise ValidationFailedError(
                f"a batch holds at most {MAX_BATCH} photos; {len(images)} were sent",
                limit=MAX_BATCH,
            )
        raw = form.get("params")
        options = _options(raw if isinstance(raw, str) else "{}")
        run = run_request(options, services.config.pipeline, ("params",))
        entries = []
        for index, image in enumerate(images):
            entries.append(await _photo(services, viewer, index, image, run, client))
    finally:
        await form.close()
    return entries


async def _photo(
    services: Services,
    viewer: Viewer,
    index: int,
    image: UploadFile,
    run: RunRequest,
    client: str | None,
) -> BatchEntry:
    """Check and store one photo as a new job, then admit its run."""
    limits = services.config.pipeline.limits
    try:
        data = await image.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise ImageTooLargeError(
                f"the image is larger than {limits.max_upload_bytes} bytes",
                limit_bytes=limits.max_upload_bytes,
            )
        kind = await run_in_threadpool(check_image, data, limits)
        job_id = uuid.uuid4().hex
        upload = await run_in_threadpool(
            services.store.put_upload, job_id, data, MEDIA_TYPES[kind], viewer.key_id
        )
        job = await services.registry.register_upload(job_id, upload, viewer.key_id)
    except OrfeasError as exc:
        return BatchEntry(index=index, job_id=None, status=REJECTED, error=exc.to_dict())
    services.jobs.apply(job)
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
        await services.jobs.get(job_id, viewer)  # another key's job: 404, as if unknown
        job = await services.registry.submit(job_id, run, client)
    except OrfeasError as exc:
        held = services.jobs.peek(job_id)
        status = str(held.status) if held is not None and viewer.may_see(held.owner) else None
        return BatchEntry(
            index=index,
            job_id=job_id if status else None,
            status=status or REJECTED,
            error=exc.to_dict(),
        )
    services.jobs.apply(job)
    return BatchEntry(index=index, job_id=job_id, status=str(job.status))


def _options(raw: str) -> GenerateOptions:
    try:
        return GenerateOptions.model_validate_json(raw or "{}")
    except ValidationError as exc:
        raise _invalid(exc, "params") from None


def _jobs_request(body: bytes) -> BatchJobsRequest:
    try:
        return BatchJobsRequest.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError, *where: str) -> RequestValidationError:
    """The same 400/422 answers as any other JSON body's."""
    return RequestValidationError(
        [{**err, "loc": ("body", *where, *err.get("loc", ()))} for err in exc.errors()]
    )


# -- reading a batch ---------------------------------------------------------------------


async def _manifest(services: Services, viewer: Viewer, batch_id: str) -> dict[str, Any]:
    manifest = await run_in_threadpool(services.store.read_batch, batch_id)
    if manifest is None or not viewer.may_see(manifest.get("owner")):
        raise BatchNotFoundError(f"no batch with id {batch_id}", batch_id=batch_id)
    return manifest


async def _status(services: Services, viewer: Viewer, manifest: dict[str, Any]) -> BatchStatus:
    jobs = [await _entry(services, viewer, entry) for entry in manifest["jobs"]]
    return summarize(manifest["batch_id"], float(manifest["created_at"]), jobs)


async def _entry(services: Services, viewer: Viewer, entry: dict[str, Any]) -> BatchJob:
    job_id, error = entry.get("job_id"), entry.get("error")
    if job_id is None:
        return BatchJob(index=entry["index"], job_id=None, status=REJECTED, error=error, progress=0)
    try:
        job = await services.jobs.get(job_id, viewer)
    except JobNotFoundError:
        return BatchJob(index=entry["index"], job_id=job_id, status=EXPIRED, progress=0)
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


async def _events(
    services: Services, viewer: Viewer, manifest: dict[str, Any], keepalive_s: float
) -> AsyncIterator[bytes]:
    """The batch's status now, after each change of one of its jobs, and at its end."""
    job_ids = [e["job_id"] for e in manifest["jobs"] if e.get("job_id")]
    yield b"retry: 3000\n\n"
    sent = None
    seq = 0
    with contextlib.ExitStack() as stack:
        queues = [stack.enter_context(services.jobs.listen(j)) for j in job_ids]
        while True:
            status = await _status(services, viewer, manifest)
            body = status.model_dump_json()
            if body != sent:
                seq += 1
                sent = body
                yield f"id: {seq}\ndata: {body}\n\n".encode()
            if status.status != "running":
                return
            if not await _any_change(queues, keepalive_s):
                yield b": keep-alive\n\n"


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
