"""Mesh-tool routes: ``POST /api/analyze-stl`` (a file or a job's model), ``GET /api/materials``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from serve_app.api.bodies import read_small_body
from serve_app.api.deps import Services, ServicesDep, ViewerDep
from serve_app.api.models import completed_job, mesh_of
from serve_app.contracts.meshtools import MeshAnalysis
from serve_app.errors import (
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    ValidationFailedError,
)
from serve_app.meshtools.analyze import analyze_file, analyze_mesh
from serve_app.meshtools.config import MeshLimits
from serve_app.meshtools.materials import PRESETS
from serve_app.pipeline.types import TexturedMesh
from serve_app.registry.jobs import Viewer
from serve_app.schemas.jobs import ErrorResponse
from serve_app.schemas.tools import AnalyzeJobRequest, MaterialsResponse

_codes = (400, 401, 404, 409, 413, 415, 422, 429, 500)
router = APIRouter(
    tags=["mesh tools"],
    responses={code: {"model": ErrorResponse} for code in _codes},
)

ANALYZE_PATH = "/api/analyze-stl"
#: A JSON body here names a job; it is never large.
MAX_JSON_BYTES = 16 * 1024


_ANALYSIS_EXAMPLE = {
    "format": "stl",
    "triangles": 12,
    "vertices": 8,
    "bounding_box_mm": {"x": 10.0, "y": 10.0, "z": 10.0},
    "volume_mm3": 1000.0,
    "surface_area_mm2": 600.0,
    "watertight": True,
    "winding_consistent": True,
    "boundary_edges": 0,
    "non_manifold_edges": 0,
    "components": 1,
    "degenerate_faces": 0,
    "printable": True,
    "issues": [],
}
_ANALYZE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "binary or ASCII STL, OBJ, PLY or GLB, recognised "
                            "by its content (not its name); at most mesh_tools.max_upload_bytes",
                        }
                    },
                }
            },
            "application/json": {
                "schema": AnalyzeJobRequest.model_json_schema(),
                "example": {"job_id": "3f2a9c0e5b7d4e1f8a6c2b9d0e4f7a1c"},
            },
        },
    }
}


@router.post(
    ANALYZE_PATH,
    openapi_extra=_ANALYZE_BODY,
    responses={200: {"content": {"application/json": {"example": _ANALYSIS_EXAMPLE}}}},
)
async def analyze_stl(request: Request, services: ServicesDep, viewer: ViewerDep) -> MeshAnalysis:
    """Size, volume, area, topology and printability of a mesh.

    Send a mesh file in the multipart field ``file`` (STL has no unit and is read as
    millimetres, OBJ and PLY too; GLB is in metres and converted), or JSON
    ``{"job_id", "variant"?}`` for a completed job's model. 413 for a file over the limit
    or with too many faces, 415 for bytes that are no mesh file, 400 for a broken one.
    """
    limits = services.config.mesh_tools
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        data = await _uploaded_mesh(request, limits)
        return await run_in_threadpool(analyze_file, data, limits)
    if kind == "application/json":
        body = _job_request(await read_small_body(request, MAX_JSON_BYTES))
        mesh = await _job_mesh(services, viewer, body.job_id, body.variant)
        return await run_in_threadpool(_analyze_canonical, mesh)
    raise UnsupportedMediaTypeError(
        "send multipart/form-data with the mesh file in the field `file`, "
        'or application/json {"job_id": ...}'
    )


@router.get(
    "/api/materials",
    responses={200: {"content": {"application/json": {"example": {"presets": [
        {"name": "metal", "base_color": None, "metallic": 1.0, "roughness": 0.3,
         "description": "brushed metal: the colours reflect as metal"}]}}}}},
)  # fmt: skip
async def materials() -> MaterialsResponse:
    """The material presets. A custom material is ``{"base_color": "#rrggbb", "metallic":
    0..1, "roughness": 0..1}``; a preset keeps the model's texture, a ``base_color``
    replaces it."""
    return MaterialsResponse(presets=list(PRESETS.values()))


async def _uploaded_mesh(request: Request, limits: MeshLimits) -> bytes:
    """The bytes of the field ``file``; the body was counted by the size guard as it came."""
    form = await request.form(max_files=1, max_fields=4)  # a malformed body is a 400
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationFailedError("the multipart field `file` with a mesh file is missing")
        data = await upload.read(limits.max_upload_bytes + 1)
    finally:
        await form.close()
    if len(data) > limits.max_upload_bytes:
        raise PayloadTooLargeError(
            f"the mesh file is larger than {limits.max_upload_bytes} bytes",
            limit_bytes=limits.max_upload_bytes,
        )
    return data


def _job_request(body: bytes) -> AnalyzeJobRequest:
    try:
        return AnalyzeJobRequest.model_validate_json(body)
    except ValidationError as exc:  # the same 400/422 answers as any other JSON body
        errors = [{**err, "loc": ("body", *err.get("loc", ()))} for err in exc.errors()]
        raise RequestValidationError(errors) from None


async def _job_mesh(
    services: Services, viewer: Viewer, job_id: str, variant: str | None
) -> TexturedMesh:
    """The canonical mesh of a completed job or of its variant (404 unknown job, another
    key's job or an unknown variant; 409 not done)."""
    job = await completed_job(services, viewer, job_id)
    key, _ = await mesh_of(services, job, variant)
    data = await run_in_threadpool(services.store.read_mesh, key)
    return await run_in_threadpool(TexturedMesh.from_bytes, data)


def _analyze_canonical(mesh: TexturedMesh) -> MeshAnalysis:
    return analyze_mesh(mesh.vertices, mesh.faces, "canonical")
