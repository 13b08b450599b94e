"""Routes that make new versions and pictures of a job's model: ``POST /api/optimize-mesh``,
``POST /api/apply-material``, ``POST /api/preview-3d``.

The work runs in the MeshTools deployment (``serve_app.api.variant_service``). A variant is
asked of the registry, which makes each one once however many ask (and records it with its
job); a preview is content-addressed in the store and rendered on first request, once per
replica at a time.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from serve_app.api import variant_service
from serve_app.api.deps import ServicesDep, ViewerDep
from serve_app.api.route_params import error_responses
from serve_app.contracts.params import OUTPUT_FORMATS
from serve_app.meshtools.materials import resolve_material
from serve_app.meshtools.variants import VariantOperation
from serve_app.schemas.jobs import download_url
from serve_app.schemas.tools import MaterialRequest, OptimizeRequest, PreviewRequest, VariantMade

router = APIRouter(
    tags=["mesh tools"], responses=error_responses(400, 401, 404, 409, 413, 422, 429, 503)
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
    return await variant_service.make_variant(
        services, viewer, body, VariantOperation.OPTIMIZE, body.params()
    )


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
    return await variant_service.make_variant(
        services, viewer, body, VariantOperation.MATERIAL, params
    )


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
    path = await variant_service.preview(services, viewer, body)
    return FileResponse(path, media_type="image/png")
