"""The mesh analysis route: ``POST /api/analyze-stl``, of a mesh file or of a job's model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from serve_app.api.deps import ServicesDep, ViewerDep
from serve_app.api.job_service import job_mesh
from serve_app.api.request_bodies import body_kind, file_or_json_body, parse_json, read_small_body
from serve_app.api.route_params import MESH_MEDIA_TYPES, error_responses
from serve_app.contracts.meshtools import MeshAnalysis
from serve_app.errors import (
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    ValidationFailedError,
)
from serve_app.meshtools.analyze import analyze_file, analyze_mesh
from serve_app.meshtools.config import MeshLimits
from serve_app.pipeline.types import TexturedMesh
from serve_app.schemas.tools import AnalyzeJobRequest

router = APIRouter(
    tags=["mesh tools"], responses=error_responses(400, 401, 404, 409, 413, 415, 422, 429, 500)
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
_MESH_FILE = {
    "file": {
        "type": "string",
        "format": "binary",
        "description": "binary or ASCII STL, OBJ, PLY or GLB, recognised "
        "by its content (not its name); at most mesh_tools.max_upload_bytes",
    }
}
_ANALYZE_BODY: dict[str, Any] = {
    "requestBody": file_or_json_body(
        _MESH_FILE, "file", AnalyzeJobRequest, {"job_id": "3f2a9c0e5b7d4e1f8a6c2b9d0e4f7a1c"}
    )
}
#: The media types of the mesh files analyze-stl reads (the content decides, not the type).
_ANALYZE_BODY["requestBody"]["content"]["multipart/form-data"]["encoding"] = {
    "file": {"contentType": ", ".join(MESH_MEDIA_TYPES)}
}
_NOT_A_MESH = {
    **error_responses(415)[415],
    "description": "the file is no STL, OBJ, PLY or GLB (judged by its content)",
}


@router.post(
    ANALYZE_PATH,
    openapi_extra=_ANALYZE_BODY,
    responses={
        200: {"content": {"application/json": {"example": _ANALYSIS_EXAMPLE}}},
        415: _NOT_A_MESH,
    },
)
async def analyze_stl(request: Request, services: ServicesDep, viewer: ViewerDep) -> MeshAnalysis:
    """Size, volume, area, topology and printability of a mesh.

    Send a mesh file in the multipart field ``file`` (STL has no unit and is read as
    millimetres, OBJ and PLY too; GLB is in metres and converted), or JSON
    ``{"job_id", "variant"?}`` for a completed job's model. 413 for a file over the limit
    or with too many faces, 415 for bytes that are no mesh file, 400 for a broken one.
    """
    limits = services.config.mesh_tools
    kind = body_kind(request)
    if kind == "multipart/form-data":
        data = await _uploaded_mesh(request, limits)
        return await run_in_threadpool(analyze_file, data, limits)
    if kind == "application/json":
        body = parse_json(AnalyzeJobRequest, await read_small_body(request, MAX_JSON_BYTES))
        mesh = await job_mesh(services, viewer, body.job_id, body.variant)
        return await run_in_threadpool(_analyze_canonical, mesh)
    raise UnsupportedMediaTypeError(
        "send multipart/form-data with the mesh file in the field `file`, "
        'or application/json {"job_id": ...}'
    )


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


def _analyze_canonical(mesh: TexturedMesh) -> MeshAnalysis:
    return analyze_mesh(mesh.vertices, mesh.faces, "canonical")
