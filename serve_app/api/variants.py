"""Routes that make new versions and pictures of a job's model: ``POST /api/optimize-mesh``,
``POST /api/apply-material``, ``POST /api/preview-3d``, ``GET /api/jobs/{id}/thumbnail``.

The work runs in the MeshTools deployment. A variant is asked of the registry, which makes
each one once however many ask (and records it with its job); a preview is content-
addressed in the store and rendered on first request, once per replica at a time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import FileResponse, Response

from serve_app.api.deps import Services, ServicesDep, ViewerDep
from serve_app.api.models import completed_job, find_variant, mesh_of
from serve_app.api.routes import JobIdPath
from serve_app.contracts.params import OUTPUT_FORMATS
from serve_app.contracts.variants import VariantOrder
from serve_app.errors import ModelUnavailableError, WorkTimeoutError
from serve_app.meshtools.materials import resolve_material
from serve_app.meshtools.variants import (
    PreviewOrder,
    VariantOperation,
    thumbnail_order,
    variant_id,
)
from serve_app.registry.jobs import Viewer
from serve_app.schemas.jobs import (
    ErrorResponse,
    VariantResponse,
    download_url,
)
from serve_app.schemas.tools import (
    MaterialRequest,
    OptimizeRequest,
    PreviewRequest,
    VariantMade,
    VariantRequest,
)

_codes = (400, 401, 404, 409, 413, 422, 429, 503)
router = APIRouter(
    tags=["mesh tools"], responses={code: {"model": ErrorResponse} for code in _codes}
)

_JOB_EXAMPLE = "3f2a9c0e5b7d4e1f8a6c2b9d0e4f7a1c"
_VARIANT_EXAMPLE = "9b1e" + "0" * 56 + "7c2d"


def _made_example(operation: str, params: dict[str, Any], faces: int) -> dict[str, Any]:
    return {
        "job_id": _JOB_EXAMPLE,
        "variant_id": _VARIANT_EXAMPLE,
        "operation": operation,
        "params": params,
        "base": None,
        "faces": faces,
        "watertight": True,
        "downloads": {f: download_url(_JOB_EXAMPLE, f, _VARIANT_EXAMPLE) for f in OUTPUT_FORMATS},
    }


def _examples(request: dict[str, Any], answer: dict[str, Any] | None) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "requestBody": {"content": {"application/json": {"example": request}}},
    }
    if answer is not None:
        extra["responses"] = {"200": {"content": {"application/json": {"example": answer}}}}
    return extra


@router.post(
    "/api/optimize-mesh",
    openapi_extra=_examples(
        {"job_id": _JOB_EXAMPLE, "target_faces": 5000, "repair": True},
        _made_example("optimize", {"target_faces": 5000, "repair": True}, 5000),
    ),
)
async def optimize_mesh(
    body: OptimizeRequest, services: ServicesDep, viewer: ViewerDep
) -> VariantMade:
    """A lighter version of a completed job's model: at most ``target_faces`` faces (100 to
    1,000,000), a closed model kept closed, its texture and UVs kept. The same request
    gives the same variant (made once); download it in every format from ``downloads``.

    404 unknown job or variant (or another key's job), 409 not completed, 422 a target the
    model cannot reach and stay closed, 503 the mesh tools busy or over their time.
    """
    params = {"target_faces": body.target_faces, "repair": body.repair}
    return await _make(services, viewer, body, VariantOperation.OPTIMIZE, params)


@router.post(
    "/api/apply-material",
    openapi_extra=_examples(
        {"job_id": _JOB_EXAMPLE, "material": "metal"},
        _made_example(
            "material",
            {"name": "metal", "base_color": None, "metallic": 1.0, "roughness": 0.3},
            10020,
        ),
    ),
)
async def apply_material(
    body: MaterialRequest, services: ServicesDep, viewer: ViewerDep
) -> VariantMade:
    """A version of a completed job's model with another finish: a preset (its texture
    kept) or ``{"base_color"?, "metallic", "roughness"}`` (a ``base_color`` replaces the
    texture). GLB carries the PBR factors, OBJ's MTL the matching terms, PLY the tinted
    vertex colours; STL has no material. 422 for an unknown preset (listing them).
    """
    material = resolve_material(body.material)
    params = material.model_dump(mode="json", exclude={"description"})
    return await _make(services, viewer, body, VariantOperation.MATERIAL, params)


@router.post(
    "/api/preview-3d",
    response_class=Response,
    openapi_extra=_examples(
        {
            "job_id": _JOB_EXAMPLE,
            "width": 512,
            "height": 384,
            "azimuth_deg": 30,
            "elevation_deg": 20,
            "background": "transparent",
        },
        None,
    ),
    responses={200: {"content": {"image/png": {}}, "description": "the picture (PNG)"}},
)
async def preview_3d(body: PreviewRequest, services: ServicesDep, viewer: ViewerDep) -> Response:
    """A PNG of the textured model (or a variant), lit and framed to fill the picture,
    ``width`` × ``height`` (64 to 2048 each), seen from ``azimuth_deg`` and
    ``elevation_deg``, on ``background``. Rendered once per model and view, then kept.
    """
    job = await completed_job(services, viewer, body.job_id)
    key = (await mesh_of(services, job, body.variant))[0]
    order = PreviewOrder(
        key, body.width, body.height, body.azimuth_deg, body.elevation_deg, body.background
    )
    return FileResponse(await preview_file(services, order), media_type="image/png")


@router.get(
    "/api/jobs/{job_id}/thumbnail",
    tags=["jobs"],
    response_class=Response,
    responses={
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


async def preview_file(services: Services, order: PreviewOrder) -> Path:
    """The stored PNG of ``order``, rendered by the MeshTools deployment on first request."""
    view = order.view()
    path = services.store.preview_path(order.mesh_key, view)
    if path.is_file():
        return path
    if services.previews is None:
        raise ModelUnavailableError("previews need the MeshTools deployment", feature="preview")
    timeout_s = services.config.mesh_tools.timeout_s
    lock_name = f"preview.{order.mesh_key}.{view}"
    try:
        async with services.conversion_lock(lock_name):
            if not path.is_file():
                await asyncio.wait_for(services.previews.render(order), timeout_s)
    except TimeoutError:
        raise WorkTimeoutError(
            f"the preview was not rendered within {timeout_s:g} s; retry later",
            retry_after_s=max(1, round(timeout_s / 4)),
        ) from None
    finally:  # a failed or abandoned render must not leave its lock behind
        services.release_conversion_lock(lock_name)
    return path


async def _make(
    services: Services,
    viewer: Viewer,
    body: VariantRequest,
    operation: VariantOperation,
    params: dict[str, Any],
) -> VariantMade:
    job = await completed_job(services, viewer, body.job_id)
    base_key, _ = await mesh_of(services, job, body.variant)
    order = VariantOrder(
        job_id=job.job_id,
        variant_id=variant_id(job.job_id, base_key, operation, params),
        base=body.variant,
        base_key=base_key,
        operation=str(operation),
        params=params,
    )
    job = await services.registry.make_variant(order)
    services.jobs.apply(job)  # read-your-writes: the variant is listed on this replica
    made = find_variant(job, order.variant_id)
    assert made is not None, "the registry answers with the job holding the variant"
    listed = VariantResponse.of(job.job_id, made)
    return VariantMade(job_id=job.job_id, **listed.model_dump(exclude={"created_at"}))
