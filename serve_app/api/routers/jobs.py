"""Job routes: upload, generate, status, list, cancel, download, logs, picture, thumbnail.

Each one validates, delegates to ``serve_app.api.job_service`` (or the registry, or the
replica's job view) and answers.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from fastapi import APIRouter, File, Header, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from serve_app.api import responses
from serve_app.api.deps import ServicesDep, ViewerDep
from serve_app.api.job_service import (
    MEDIA_TYPES,
    cancel_run,
    completed_job,
    mesh_of,
    run_request,
    submit_run,
    upload_photo,
    view_fields,
)
from serve_app.api.model_files import export_file, preview_file
from serve_app.api.route_params import JobIdPath, VariantQuery, error_responses
from serve_app.api.texture_service import texture_request
from serve_app.api.webhook_service import (
    check_callback,
    deliveries_of,
    subscribe_job,
)
from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.params import OutputFormat
from serve_app.contracts.views import EXTRA_VIEWS
from serve_app.errors import JobConflictError
from serve_app.meshtools.variants import thumbnail_order
from serve_app.schemas.jobs import (
    GenerateRequest,
    JobListResponse,
    JobLogResponse,
    JobStatusResponse,
    TextureMeshParams,
    UploadResponse,
)
from serve_app.schemas.webhooks import DeliveriesResponse
from serve_app.webhooks.records import TargetKind

ImageUpload = Annotated[
    UploadFile,
    File(description="a PNG, JPEG or WebP photo", json_schema_extra={"minLength": 1}),
]
ViewPhoto = Annotated[
    UploadFile | None,
    File(
        description="a PNG, JPEG or WebP photo of the same subject from this view",
        json_schema_extra={"minLength": 1},
    ),
]

#: The errors the job routes may answer: most of them; cancel and logs; the thumbnail.
JOB_ERRORS = error_responses(400, 401, 404, 409, 413, 415, 422, 429, 500, 503)
CONTROL_ERRORS = error_responses(404, 409, 422, 503)
RENDER_ERRORS = error_responses(400, 401, 404, 409, 413, 422, 429, 503)
#: An upload or a run also answers 408 (its body stalled) and 507 (``storage_full``).
WRITE_ERRORS = {**JOB_ERRORS, **error_responses(408, 507)}

router = APIRouter()
TAGS: list[str | Enum] = ["jobs"]


#: The upload's part: its types, and what a file of another kind gets.
_UPLOAD_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "encoding": {"image": {"contentType": ", ".join(MEDIA_TYPES.values())}}
            }
        }
    }
}
_NOT_A_PICTURE = {**JOB_ERRORS[415], "description": "the file is no PNG, JPEG or WebP picture"}


@router.post(
    "/api/upload-image",
    tags=TAGS,
    openapi_extra=_UPLOAD_BODY,
    responses={**WRITE_ERRORS, 415: _NOT_A_PICTURE},
)
async def upload_image(
    image: ImageUpload,
    services: ServicesDep,
    viewer: ViewerDep,
    http: Request,
    left: ViewPhoto = None,
    back: ViewPhoto = None,
    right: ViewPhoto = None,
    top: ViewPhoto = None,
    bottom: ViewPhoto = None,
) -> UploadResponse:
    """Store a photo (``image``, the front view) under a new job id, with optional photos of
    the same subject from other views (``left``, ``back``, ``right``, ``top``, ``bottom``;
    see the camera convention); the job starts as ``uploaded``. Each photo passes the same
    checks; an unknown field, a repeated one or a view that is not an image is refused
    with its name.

    With API keys the job belongs to the caller's key: other keys never see it.
    """
    form = await http.form()
    names = [name for name, _ in form.multi_items()]
    given = {"left": left, "back": back, "right": right, "top": top, "bottom": bottom}
    views = {
        view: photo
        for view in view_fields(names, "image", EXTRA_VIEWS)
        if (photo := given[view]) is not None
    }
    job = await upload_photo(services, image, viewer.key_id, views)
    upload = job.upload
    assert upload is not None, "an uploaded job has its photo"
    return UploadResponse(
        job_id=job.job_id,
        status=job.status,
        sha256=upload.sha256,
        size_bytes=upload.size_bytes,
        media_type=upload.media_type,
        views=responses.view_list(upload),
    )


@router.post("/api/generate-3d", tags=TAGS, status_code=202, responses=WRITE_ERRORS)
async def generate_3d(
    body: GenerateRequest, services: ServicesDep, viewer: ViewerDep, http: Request
) -> JobStatusResponse:
    """Start a run of an uploaded job: 202 at once, 404 unknown id (or another key's job),
    409 already active, 503 when the service's queue is full, 429 when the client has its
    share of it. A job of ``texture-mesh`` textures its mesh again, at this quality and
    format (the generator options do not apply).
    """
    run = run_request(body, services.config)  # a bad request never reaches a job
    await check_callback(services, viewer, body.callback_url)
    job = await services.jobs.get(body.job_id, viewer)
    if job.upload is not None and job.upload.mesh is not None:  # a mesh to texture again
        run = texture_request(TextureMeshParams(format=body.format, quality=body.quality))
    client = getattr(http.state, "client_id", None)
    job = await submit_run(services, viewer, body.job_id, run, client)
    await subscribe_job(services, viewer, job, body.callback_url)
    return responses.job_status(job)


@router.get("/api/jobs/{job_id}/deliveries", tags=TAGS, responses=CONTROL_ERRORS)
async def job_deliveries(
    job_id: JobIdPath, services: ServicesDep, viewer: ViewerDep
) -> DeliveriesResponse:
    """The webhook deliveries of the job's ``callback_url``: each attempt's time and the
    receiver's status code (or why there was none), the state, and when the next try is
    due (404 unknown job, or another key's)."""
    await services.jobs.get(job_id, viewer)
    return await deliveries_of(services, TargetKind.JOB, job_id)


@router.get(
    "/api/job-status/{job_id}",
    tags=TAGS,
    response_model=JobStatusResponse,
    responses=JOB_ERRORS,
)
async def job_status(job_id: JobIdPath, services: ServicesDep, viewer: ViewerDep) -> Response:
    """Status, stage, progress, error and download links of a job (from this replica's
    snapshots, at most ``registry.status_staleness_s`` behind the registry).
    """
    job = await services.jobs.get(job_id, viewer)
    return Response(services.status_bodies.body(job), media_type="application/json")


@router.get("/api/jobs", tags=TAGS, responses=JOB_ERRORS)
async def list_jobs(
    services: ServicesDep,
    viewer: ViewerDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: JobStatus | None = None,
) -> JobListResponse:
    """Recent jobs the caller may see (its key's own, with keys), newest first."""
    page = await services.jobs.page(offset, limit, status, viewer)
    return JobListResponse(
        jobs=[responses.job_status(job) for job in page.jobs],
        total=page.total,
        offset=page.offset,
        limit=page.limit,
    )


@router.post("/api/jobs/{job_id}/cancel", tags=TAGS, responses=CONTROL_ERRORS)
async def cancel_job(
    job_id: JobIdPath, services: ServicesDep, viewer: ViewerDep
) -> JobStatusResponse:
    """Cancel a queued or running job; answers once it has stopped (status ``cancelled``).

    404 unknown id, 409 when the job is not queued or running (finished, or never started).
    """
    return responses.job_status(await cancel_run(services, viewer, job_id))


@router.get(
    "/download/{job_id}/{format}",
    tags=TAGS,
    response_class=FileResponse,
    responses={**JOB_ERRORS, 200: {"description": "the model file"}},
)
async def download(
    job_id: JobIdPath,
    format: OutputFormat,
    services: ServicesDep,
    viewer: ViewerDep,
    variant: VariantQuery = None,
) -> FileResponse:
    """The job's model (or its variant ``variant``) as ``format``, derived from its one
    canonical mesh on first request. 404 for a variant the job does not have."""
    from serve_app.pipeline.export import FILE_NAMES
    from serve_app.pipeline.export import MEDIA_TYPES as MODEL_TYPES

    job = await completed_job(services, viewer, job_id)
    key, _ = await mesh_of(services, job, variant)
    name = f"{job_id}_{variant[:12]}_" if variant else f"{job_id}_"
    path = await export_file(services, key, format)
    return FileResponse(path, media_type=MODEL_TYPES[format], filename=name + FILE_NAMES[format])


@router.get("/api/jobs/{job_id}/logs", tags=TAGS, responses=CONTROL_ERRORS)
async def job_logs(job_id: JobIdPath, services: ServicesDep, viewer: ViewerDep) -> JobLogResponse:
    """The job's recent events (queued, stages with their durations, its end), oldest first."""
    await services.jobs.get(job_id, viewer)
    return responses.job_log(await services.registry.job_log(job_id))


@router.get(
    "/api/jobs/{job_id}/image",
    tags=TAGS,
    response_class=FileResponse,
    responses={
        200: {
            "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}},
            "description": "the job's picture: the PNG made from its prompt, or its upload",
        },
        **error_responses(404, 409),
    },
)
async def job_image(job_id: JobIdPath, services: ServicesDep, viewer: ViewerDep) -> FileResponse:
    """The job's picture, the input of its model runs: the PNG made from a text job's
    prompt, or the photo uploaded. 409 while a text job's picture is not made (or when its
    run ended before it was); 404 for an unknown job or another key's."""
    job = await services.jobs.get(job_id, viewer)
    upload = job.upload
    if upload is None:
        why = (
            "its picture is still being made"
            if job.status.active
            else f"its run ended {job.status} before its picture was made"
        )
        raise JobConflictError(f"job {job_id} has no picture: {why}", status=str(job.status))
    path = await run_in_threadpool(services.store.upload_file, upload.sha256)
    extension = upload.media_type.rsplit("/", 1)[-1]
    return FileResponse(
        path,
        media_type=upload.media_type,
        filename=f"{job_id}.{extension}",
        content_disposition_type="inline",
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.get(
    "/api/jobs/{job_id}/thumbnail",
    tags=["mesh tools", "jobs"],
    response_class=Response,
    responses={
        **RENDER_ERRORS,
        200: {"content": {"image/png": {}}, "description": "256 × 256 PNG, transparent"},
        304: {"description": "the picture the client holds (If-None-Match) is current"},
    },
)
async def thumbnail(
    job_id: JobIdPath,
    services: ServicesDep,
    viewer: ViewerDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A small picture of a completed job's model (256 × 256, transparent background),
    rendered on first request and kept with the model. 409 until the job is completed."""
    job = await completed_job(services, viewer, job_id)
    assert job.result is not None
    order = thumbnail_order(job.result.artifact_key)
    etag = f'"{order.mesh_key[:16]}.{order.view()[:16]}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if if_none_match is not None and etag in if_none_match:
        return Response(status_code=304, headers=headers)
    path = await preview_file(services, order)
    return FileResponse(path, media_type="image/png", headers=headers)
