"""What the job routes do beyond answering: admit a photo as a job (the one upload check),
resolve a run's options, start and cancel runs, and find a completed job's model and its
variants."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from serve_app.api.deps import Services
from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.params import GeneratorName
from serve_app.contracts.runs import RunRequest
from serve_app.contracts.variants import VariantInfo
from serve_app.contracts.views import (
    MAX_VIEWS,
    VIEW_NAMES,
    ViewName,
    check_view_name,
    in_view_order,
)
from serve_app.errors import (
    JobConflictError,
    OrfeasError,
    PayloadTooLargeError,
    ValidationFailedError,
    VariantNotFoundError,
)
from serve_app.pipeline.generators import catalog, hunyuan3d_profile
from serve_app.pipeline.images import check_image
from serve_app.pipeline.types import TexturedMesh
from serve_app.registry.jobs import JobSnapshot, Viewer
from serve_app.schemas.jobs import GenerateOptions

if TYPE_CHECKING:
    from serve_app.config import AppConfig

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


async def upload_photo(
    services: Services,
    image: UploadFile,
    owner: str | None,
    views: Mapping[ViewName, UploadFile] | None = None,
) -> JobSnapshot:
    """Check ``image`` and each of ``views`` (413 over the size limit; 415, 413 or 400 for
    what ``check_image`` refuses, naming the view), store them and register them as a new
    job of ``owner``, status ``uploaded``; 507 when the store is below its free-space floor."""
    data, media_type = await read_photo(services, image, "image" if views else None)
    extra: dict[ViewName, tuple[bytes, str]] = {}
    for view, upload in (views or {}).items():
        extra[view] = await read_photo(services, upload, str(view))
    await check_room(services)
    job_id = uuid.uuid4().hex
    stored = await run_in_threadpool(
        services.store.put_upload, job_id, data, media_type, owner, extra
    )
    job = await services.registry.register_upload(job_id, stored, owner)
    services.jobs.apply(job)  # read-your-writes on this replica
    return job


async def read_photo(
    services: Services, photo: UploadFile, field: str | None = None
) -> tuple[bytes, str]:
    """The bytes and media type of one photo after the one upload check: 413 over the size
    limit; 415, 413 or 400 for what ``check_image`` refuses. ``field`` (a form field, a
    view) is named in the error when given."""
    limits = services.config.pipeline.limits
    limit = limits.max_upload_bytes
    data = await photo.read(limit + 1)
    try:
        if len(data) > limit:
            raise PayloadTooLargeError(f"the image is larger than {limit} bytes", limit_bytes=limit)
        kind = await run_in_threadpool(check_image, data, limits)
    except OrfeasError as exc:
        if field is not None:
            exc.message = f"{field}: {exc.message}"
            exc.details["field"] = field
        raise
    return data, MEDIA_TYPES[kind]


def view_fields(
    names: list[str], front: str | None, allowed: tuple[ViewName, ...]
) -> list[ViewName]:
    """The views named by a multipart body's fields ``names``: ``front`` (if given) is the
    field of the front photo, the others must be distinct views of ``allowed``; 422 naming
    an unknown field, a repeated one or one past the sixth view."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValidationFailedError(
                f"{name}: given twice; each view is one photo",
                field=name,
                fields=[{"loc": ["body", name], "message": "given twice"}],
            )
        seen.add(name)
        if name != front:
            check_view_name(name, allowed)
        if len(seen) > MAX_VIEWS:
            raise ValidationFailedError(
                f"{name}: at most {MAX_VIEWS} views ({', '.join(VIEW_NAMES)}) per job",
                field=name,
                fields=[{"loc": ["body", name], "message": "more views than there are"}],
            )
    return in_view_order([n for n in names if n != front])


async def submit_run(
    services: Services, viewer: Viewer, job_id: str, run: RunRequest, client: str | None
) -> JobSnapshot:
    """Start ``run`` of the job (404 for another key's job, as if unknown; 409 already
    active; 503 or 429 when the queue or the client's share of it is full)."""
    await services.jobs.get(job_id, viewer)
    await check_room(services)
    job = await services.registry.submit(job_id, run, client)
    services.jobs.apply(job)  # read-your-writes on this replica
    return job


async def check_room(services: Services) -> None:
    """507 ``storage_full`` while the store's free space is below ``storage.min_free_bytes``:
    new uploads and runs are refused before the disk is full, not after."""
    await run_in_threadpool(services.store.check_room, services.config.storage.min_free_bytes)


async def cancel_run(services: Services, viewer: Viewer, job_id: str) -> JobSnapshot:
    """Cancel the job's run once it has stopped (404 unknown, or another key's job; 409
    when it is not queued or running)."""
    await services.jobs.get(job_id, viewer)
    job = await services.registry.cancel(job_id)
    services.jobs.apply(job)
    return job


def run_request(
    options: GenerateOptions, config: AppConfig, where: tuple[str, ...] = ()
) -> RunRequest:
    """The run ``options`` ask for, its generator's parameters resolved (with this
    deployment's defaults: hunyuan3d's variant and the replicas' device): a 422 for a
    generator that is not enabled or a parameter it does not take. ``where`` is the
    options' place in the body (``generate_3d`` of a text-to-image request)."""
    pipeline = config.pipeline
    generator = options.generator or pipeline.generator
    enabled = pipeline.generators.enabled()
    if generator not in enabled:
        name = ".".join((*where, "generator"))
        raise ValidationFailedError(
            f"{name}: {generator!r} is not enabled here; enabled: {', '.join(enabled)}",
            enabled=enabled,
            fields=[{"loc": ["body", *where, "generator"], "message": "not an enabled generator"}],
        )
    params = catalog.resolve_params(
        generator, options.params(), deployment_overrides(config, generator)
    )
    return RunRequest(params=params, format=options.format, generator=generator)


def deployment_overrides(config: AppConfig, generator: str) -> dict[str, int | float]:
    """The defaults this deployment's replicas use in place of the catalog's for
    ``generator`` (hunyuan3d and hunyuan3d_mv: the variant's, and octree 128 on replicas
    without CUDA)."""
    if generator not in (GeneratorName.HUNYUAN3D, GeneratorName.HUNYUAN3D_MV):
        return {}
    settings = getattr(config.pipeline.generators, str(generator))
    if settings is None:
        return {}
    return hunyuan3d_profile.deployment_overrides(settings, config.shape_texture.num_gpus)


async def completed_job(services: Services, viewer: Viewer, job_id: str) -> JobSnapshot:
    """The job, if ``viewer`` may see it (else 404) and it is completed (else 409)."""
    job = await services.jobs.get(job_id, viewer)
    if job.status is not JobStatus.COMPLETED or job.result is None:
        raise JobConflictError(
            f"job {job_id} is {job.status}; this needs its model, so wait until it is completed",
            status=str(job.status),
        )
    return job


async def mesh_of(
    services: Services, job: JobSnapshot, variant: str | None
) -> tuple[str, VariantInfo | None]:
    """The store key of the job's model, or of its variant ``variant`` (with the variant);
    404 for a variant the job does not have."""
    assert job.result is not None
    if variant is None:
        return job.result.artifact_key, None
    found = find_variant(job, variant)
    if found is None:  # made an instant ago, through another replica: ask the registry
        job = await services.registry.get(job.job_id)
        services.jobs.apply(job)
        found = find_variant(job, variant)
    if found is None:
        raise VariantNotFoundError(
            f"job {job.job_id} has no variant {variant}", job_id=job.job_id, variant=variant
        )
    return found.variant_id, found


async def job_mesh(
    services: Services, viewer: Viewer, job_id: str, variant: str | None
) -> TexturedMesh:
    """The canonical mesh of a completed job or of its variant (404 unknown job, another
    key's job or an unknown variant; 409 not done)."""
    job = await completed_job(services, viewer, job_id)
    key, _ = await mesh_of(services, job, variant)
    data = await run_in_threadpool(services.store.read_mesh, key)
    return await run_in_threadpool(TexturedMesh.from_bytes, data)


def find_variant(job: JobSnapshot, variant: str) -> VariantInfo | None:
    return next((v for v in job.variants if v.variant_id == variant), None)
