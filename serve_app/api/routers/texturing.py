"""``POST /api/texture-mesh``: a mesh file and photos of its subject → a job that textures it.

The job is an ordinary job (progress, cancel, cache, ownership, variants, downloads in
every format); its run's shape stage reads the uploaded mesh instead of generating one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from serve_app.api import responses
from serve_app.api.deps import ServicesDep, ViewerDep
from serve_app.api.job_service import MEDIA_TYPES, check_room
from serve_app.api.request_bodies import body_kind, parse_json
from serve_app.api.route_params import MESH_MEDIA_TYPES, error_responses
from serve_app.api.texture_service import start_texturing
from serve_app.api.webhook_service import check_callback, subscribe_job
from serve_app.contracts.views import VIEW_NAMES
from serve_app.errors import UnsupportedMediaTypeError, ValidationFailedError
from serve_app.schemas.jobs import JobStatusResponse, TextureMeshParams

TEXTURE_PATH = "/api/texture-mesh"

router = APIRouter(
    tags=["jobs", "mesh tools"],
    responses=error_responses(400, 401, 404, 409, 413, 415, 422, 429, 503),
)

_PHOTO = {"type": "string", "format": "binary", "minLength": 1}
_FIELDS: dict[str, Any] = {
    "mesh": {
        **_PHOTO,
        "description": "STL, OBJ, PLY or GLB; recognised by its content, at most "
        "mesh_tools.max_upload_bytes",
    },
    **{
        str(view): {**_PHOTO, "description": f"a PNG, JPEG or WebP photo from the {view} view"}
        for view in VIEW_NAMES
    },
    "params": {
        "type": "string",
        "description": "JSON: format (glb, obj, stl, ply) and quality (1..10)",
        "example": '{"format": "glb", "quality": 5}',
    },
}
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["mesh"],
                    # at least one photo, from any of the views
                    "anyOf": [{"required": [str(view)]} for view in VIEW_NAMES],
                    "properties": _FIELDS,
                },
                "encoding": {
                    "mesh": {"contentType": ", ".join(MESH_MEDIA_TYPES)},
                    **{
                        str(view): {"contentType": ", ".join(MEDIA_TYPES.values())}
                        for view in VIEW_NAMES
                    },
                },
            }
        },
    }
}


@router.post(TEXTURE_PATH, status_code=202, openapi_extra=_BODY)
async def texture_mesh(
    request: Request, services: ServicesDep, viewer: ViewerDep
) -> JobStatusResponse:
    """Texture an uploaded mesh from 1 to 6 photos of its subject (fields ``front``,
    ``left``, ``back``, ``right``, ``top``, ``bottom``; see the camera convention): 202
    with the new job, queued. The model keeps the mesh's geometry and axes (STL, OBJ and
    PLY in their numbers, read as millimetres; GLB in metres). 413/415/400 for a mesh or
    a photo the checks refuse, naming its field; 422 for an unknown field or bad params.
    """
    if body_kind(request) != "multipart/form-data":
        raise UnsupportedMediaTypeError(
            "send multipart/form-data: the mesh in `mesh`, photos in `front`..`bottom`"
        )
    form = await request.form(max_files=len(VIEW_NAMES) + 1, max_fields=len(VIEW_NAMES) + 2)
    try:
        fields = list(form.multi_items())
        files = {name: v for name, v in fields if isinstance(v, UploadFile)}
        texts = {name: v for name, v in fields if not isinstance(v, UploadFile)}
        mesh = files.pop("mesh", None)
        if mesh is None:
            raise ValidationFailedError(
                "mesh: the multipart field `mesh` with a mesh file is missing",
                field="mesh",
                fields=[{"loc": ["body", "mesh"], "message": "missing"}],
            )
        raw = texts.pop("params", None)
        params = (
            parse_json(TextureMeshParams, str(raw), "params")
            if raw is not None
            else TextureMeshParams()
        )
        names = [name for name, _ in fields if name not in ("mesh", "params")]
        await check_callback(services, viewer, params.callback_url)
        await check_room(services)
        client = getattr(request.state, "client_id", None)
        job = await start_texturing(services, viewer, mesh, names, files, params, client)
        await subscribe_job(services, viewer, job, params.callback_url)
    finally:
        await form.close()
    return responses.job_status(job)
