"""Batch routes: ``POST /api/batch-generate``, ``GET /api/batches/{id}`` and its events.

What a batch is and how its jobs are admitted and followed: ``serve_app.api.batch_service``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.sse import EventSourceResponse
from starlette.datastructures import UploadFile

from serve_app.api import batch_service, webhook_service
from serve_app.api.deps import ServicesDep, ViewerDep
from serve_app.api.request_bodies import body_kind, file_or_json_body, parse_json, read_small_body
from serve_app.api.route_params import KEEPALIVE_S, BatchIdPath, error_responses
from serve_app.api.sse import event_stream, stream_route
from serve_app.errors import UnsupportedMediaTypeError
from serve_app.schemas.tools import MAX_BATCH, BatchCreated, BatchJobsRequest, BatchStatus
from serve_app.schemas.webhooks import DeliveriesResponse
from serve_app.webhooks.records import TargetKind

BATCH_PATH = "/api/batch-generate"
#: A JSON body here lists job ids; it is never large.
MAX_JSON_BYTES = 64 * 1024

router = APIRouter(tags=["batches"], responses=error_responses(400, 401, 404, 413, 415, 422, 429))

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
_PHOTOS = {
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
    "callback_url": {
        "type": "string",
        "maxLength": 2048,
        "description": "https URL the batch's final status is POSTed to when it ends "
        "(signed; see generate-3d's callback_url)",
    },
}
_JOBS_EXAMPLE = {
    "job_ids": ["3f2a9c0e5b7d4e1f8a6c2b9d0e4f7a1c"],
    "params": {"format": "glb", "quality": 5},
}
_BATCH_BODY: dict[str, Any] = {
    "requestBody": file_or_json_body(_PHOTOS, "images", BatchJobsRequest, _JOBS_EXAMPLE),
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
    kind = body_kind(request)
    client = getattr(request.state, "client_id", None)
    if kind == "multipart/form-data":
        form = await request.form(max_files=MAX_BATCH + 1, max_fields=4)  # malformed: a 400
        try:
            images = [f for f in form.getlist("images") if isinstance(f, UploadFile)]
            raw = form.get("params")
            params = raw if isinstance(raw, str) else "{}"
            url = form.get("callback_url")
            callback_url = url if isinstance(url, str) and url else None
            await webhook_service.check_callback(services, viewer, callback_url)
            entries = await batch_service.photo_batch(services, viewer, images, params, client)
        finally:
            await form.close()
    elif kind == "application/json":
        body = parse_json(BatchJobsRequest, await read_small_body(request, MAX_JSON_BYTES))
        callback_url = body.callback_url
        await webhook_service.check_callback(services, viewer, callback_url)
        entries = await batch_service.job_batch(services, viewer, body, client)
    else:
        raise UnsupportedMediaTypeError(
            "send multipart/form-data with photos in the field `images`, or "
            'application/json {"job_ids": [...], "params": {...}}'
        )
    created = await batch_service.record(services, viewer, entries)
    await webhook_service.subscribe_batch(services, viewer, created.batch_id, entries, callback_url)
    return created


@router.get("/api/batches/{batch_id}/deliveries")
async def batch_deliveries(
    batch_id: BatchIdPath, services: ServicesDep, viewer: ViewerDep
) -> DeliveriesResponse:
    """The webhook deliveries of the batch's ``callback_url`` (as for a job's)."""
    await batch_service.manifest_of(services, viewer, batch_id)  # 404 first
    return await webhook_service.deliveries_of(services, TargetKind.BATCH, batch_id)


@router.get("/api/batches/{batch_id}")
async def batch_status(
    batch_id: BatchIdPath, services: ServicesDep, viewer: ViewerDep
) -> BatchStatus:
    """The batch's status, progress, count per status and each job (404 unknown, or
    another key's batch)."""
    manifest = await batch_service.manifest_of(services, viewer, batch_id)
    return await batch_service.status_of(services, viewer, manifest)


@router.get(
    "/api/batches/{batch_id}/events",
    **stream_route("batch events"),
)
async def batch_events(
    batch_id: BatchIdPath,
    services: ServicesDep,
    viewer: ViewerDep,
    keepalive_s: Annotated[float, Query(ge=0.5, le=60.0)] = KEEPALIVE_S,
) -> EventSourceResponse:
    """Server-Sent Events: the batch's status now (the body of ``GET
    /api/batches/{id}``), again whenever one of its jobs changes, and a last one once no
    job is queued or running; then the stream closes."""
    manifest = await batch_service.manifest_of(services, viewer, batch_id)  # 404 first
    return event_stream(batch_service.batch_events(services, viewer, manifest, keepalive_s))
