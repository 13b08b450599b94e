"""The routes of the seed contract; each one validates, delegates and answers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from serve_app.api import responses
from serve_app.api.deps import Services, ServicesDep, ViewerDep
from serve_app.api.models import completed_job, mesh_of
from serve_app.config import background_model_file
from serve_app.contracts.jobs import JOB_ID_PATTERN, JobStatus
from serve_app.contracts.params import OutputFormat
from serve_app.contracts.runs import RunRequest
from serve_app.contracts.variants import VARIANT_ID_PATTERN
from serve_app.errors import PayloadTooLargeError, ValidationFailedError
from serve_app.pipeline.config import PipelineConfig
from serve_app.pipeline.generators import catalog
from serve_app.pipeline.images import check_image
from serve_app.schemas.jobs import (
    CheckResult,
    ErrorResponse,
    GenerateOptions,
    GenerateRequest,
    GeneratorInfo,
    GeneratorsResponse,
    HealthResponse,
    JobListResponse,
    JobStatusResponse,
    ReadinessResponse,
    UploadResponse,
)

JobIdPath = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="32 lowercase hex")]
ImageUpload = Annotated[UploadFile, File(description="a PNG, JPEG or WebP photo")]
VariantQuery = Annotated[
    str | None,
    Query(pattern=VARIANT_ID_PATTERN, description="a variant of the job's model (64 hex)"),
]

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
READINESS_TIMEOUT_S = 2.0
#: Retry-After of a degraded readiness answer (503).
READINESS_RETRY_AFTER_S = 5

_codes = (400, 401, 404, 409, 413, 415, 422, 429, 500, 503)
_errors = {code: {"model": ErrorResponse} for code in _codes}
router = APIRouter(responses=_errors)  # type: ignore[arg-type]


@router.get("/health", tags=["health"])
async def health() -> HealthResponse:
    """Liveness: the ingress answers."""
    return HealthResponse()


@router.get("/api/health", tags=["health"], response_model=ReadinessResponse)
async def readiness(services: ServicesDep) -> JSONResponse:
    """Readiness: the registry, the store, the models, each enabled generator (loaded, or
    why not), the text-to-image model where one is configured, and the deployments."""
    checks = await _readiness_checks(services)
    ready = all(check.ok for check in checks.values())
    body = ReadinessResponse(status="ok" if ready else "degraded", checks=checks)
    if ready:
        return JSONResponse(body.model_dump(mode="json"))
    headers = {"Retry-After": str(READINESS_RETRY_AFTER_S)}
    return JSONResponse(body.model_dump(mode="json"), status_code=503, headers=headers)


@router.post("/api/upload-image", tags=["jobs"])
async def upload_image(
    image: ImageUpload, services: ServicesDep, viewer: ViewerDep
) -> UploadResponse:
    """Store a photo under a new job id; the job starts as ``uploaded``.

    With API keys the job belongs to the caller's key: other keys never see it.
    """
    limit = services.config.pipeline.limits.max_upload_bytes
    data = await image.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLargeError(f"the image is larger than {limit} bytes", limit_bytes=limit)
    kind = await run_in_threadpool(check_image, data, services.config.pipeline.limits)
    media_type = MEDIA_TYPES[kind]
    job_id = uuid.uuid4().hex
    owner = viewer.key_id
    upload = await run_in_threadpool(services.store.put_upload, job_id, data, media_type, owner)
    job = await services.registry.register_upload(job_id, upload, owner)
    services.jobs.apply(job)  # read-your-writes on this replica
    return UploadResponse(
        job_id=job.job_id,
        status=job.status,
        sha256=upload.sha256,
        size_bytes=upload.size_bytes,
        media_type=upload.media_type,
    )


@router.post("/api/generate-3d", status_code=202, tags=["jobs"])
async def generate_3d(
    body: GenerateRequest, services: ServicesDep, viewer: ViewerDep, http: Request
) -> JobStatusResponse:
    """Start a run of an uploaded job: 202 at once, 404 unknown id (or another key's job),
    409 already active, 503 when the service's queue is full, 429 when the client has its
    share of it.
    """
    request = run_request(body, services.config.pipeline)
    await services.jobs.get(body.job_id, viewer)  # another key's job: 404, as if unknown
    client = getattr(http.state, "client_id", None)
    job = await services.registry.submit(body.job_id, request, client)
    services.jobs.apply(job)
    return responses.job_status(job)


def run_request(
    options: GenerateOptions, pipeline: PipelineConfig, where: tuple[str, ...] = ()
) -> RunRequest:
    """The run ``options`` ask for, its generator's parameters resolved: a 422 for a
    generator that is not enabled or a parameter it does not take. ``where`` is the
    options' place in the body (``generate_3d`` of a text-to-image request)."""
    generator = options.generator or pipeline.generator
    enabled = pipeline.generators.enabled()
    if generator not in enabled:
        name = ".".join((*where, "generator"))
        raise ValidationFailedError(
            f"{name}: {generator!r} is not enabled here; enabled: {', '.join(enabled)}",
            enabled=enabled,
            fields=[{"loc": ["body", *where, "generator"], "message": "not an enabled generator"}],
        )
    params = catalog.resolve_params(generator, options.params())
    return RunRequest(params=params, format=options.format, generator=generator)


@router.get("/api/generators", tags=["health"])
async def generators(services: ServicesDep) -> GeneratorsResponse:
    """The enabled shape generators: which is the default, which are loaded, what each takes."""
    pipeline = services.config.pipeline
    try:
        info = await asyncio.wait_for(services.registry.ping(), READINESS_TIMEOUT_S)
    except Exception:  # still list what is enabled; loaded is then unknown (False)
        info = {}
    versions, errors = info.get("generators", {}), info.get("generator_errors", {})
    return GeneratorsResponse(
        default=pipeline.generator,
        generators=[
            GeneratorInfo(
                name=name,
                summary=catalog.spec(name).summary,
                default=name == pipeline.generator,
                loaded=name in versions,
                version=versions.get(name),
                error=errors.get(name),
                parameters=list(catalog.spec(name).parameters),
            )
            for name in pipeline.generators.enabled()
        ],
    )


@router.get("/api/job-status/{job_id}", tags=["jobs"], response_model=JobStatusResponse)
async def job_status(job_id: JobIdPath, services: ServicesDep, viewer: ViewerDep) -> Response:
    """Status, stage, progress, error and download links of a job (from this replica's
    snapshots, at most ``registry.status_staleness_s`` behind the registry).
    """
    job = await services.jobs.get(job_id, viewer)
    return Response(services.status_bodies.body(job), media_type="application/json")


@router.get("/api/jobs", tags=["jobs"])
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


@router.get(
    "/download/{job_id}/{format}",
    tags=["jobs"],
    response_class=FileResponse,
    responses={200: {"description": "the model file"}},
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
    path = services.store.export_path(key, format)
    if not path.is_file():
        lock_name = f"{key}.{format}"
        try:
            async with services.conversion_lock(lock_name):
                path = await run_in_threadpool(services.store.derive_format, key, format)
        finally:  # a failed or abandoned conversion must not leave its lock behind
            services.release_conversion_lock(lock_name)
    return FileResponse(path, media_type=MODEL_TYPES[format], filename=name + FILE_NAMES[format])


async def _readiness_checks(services: Services) -> dict[str, CheckResult]:
    checks: dict[str, CheckResult] = {}
    try:
        info = await asyncio.wait_for(services.registry.ping(), READINESS_TIMEOUT_S)
        checks["registry"] = CheckResult(ok=True)
        versions, errors = info.get("generators", {}), info.get("generator_errors", {})
        for name in services.config.pipeline.generators.enabled():
            version = versions.get(name)
            checks[f"generator:{name}"] = CheckResult(
                ok=version is not None,
                detail=version
                or errors.get(name)
                or f"no ShapeTexture replica has loaded {name!r} yet",
            )
        if services.config.text_to_image.model_path is not None:
            text = info.get("text_to_image") or {}
            checks["text_to_image"] = CheckResult(
                ok=text.get("version") is not None,
                detail=text.get("version")
                or text.get("error")
                or "no TextToImage replica has loaded the model yet",
            )
    except Exception as exc:  # readiness reports, it does not raise
        checks["registry"] = CheckResult(ok=False, detail=type(exc).__name__)
    try:
        await run_in_threadpool(services.store.check_writable)
        checks["storage"] = CheckResult(ok=True)
    except OSError as exc:
        checks["storage"] = CheckResult(ok=False, detail=f"storage root not writable: {exc}")
    model = background_model_file(services.config.pipeline)
    checks["background_model"] = CheckResult(
        ok=model.is_file(), detail=None if model.is_file() else f"missing: {model}"
    )
    if services.deployment_status is not None:
        try:
            statuses = await asyncio.wait_for(services.deployment_status(), READINESS_TIMEOUT_S)
            for name, (ok, detail) in statuses.items():
                checks[f"deployment:{name}"] = CheckResult(ok=ok, detail=detail)
        except Exception as exc:  # readiness reports, it does not raise
            checks["deployments"] = CheckResult(ok=False, detail=type(exc).__name__)
    return checks
