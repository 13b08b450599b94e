"""What ``POST /api/texture-mesh`` does: check the mesh and the photos, store them as a new
job's upload and start its run, which textures the mesh (generator ``given_mesh``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from serve_app.api.deps import Services
from serve_app.api.job_service import read_photo, submit_run, view_fields
from serve_app.contracts.params import GenerationParams
from serve_app.contracts.runs import GIVEN_MESH, RunRequest
from serve_app.contracts.views import VIEW_NAMES, ViewName
from serve_app.errors import OrfeasError, PayloadTooLargeError, ValidationFailedError
from serve_app.meshtools.readers import read_mesh
from serve_app.registry.jobs import JobSnapshot, Viewer
from serve_app.schemas.jobs import TextureMeshParams


async def start_texturing(
    services: Services,
    viewer: Viewer,
    mesh: UploadFile,
    names: list[str],
    files: Mapping[str, UploadFile],
    params: TextureMeshParams,
    client: str | None,
) -> JobSnapshot:
    """Admit the mesh and the photos (``names``: the photo fields as sent) as a new job of
    the caller's and start texturing it."""
    views = view_fields(names, None, VIEW_NAMES)
    if not views:
        raise ValidationFailedError(
            "at least one photo of the subject is needed, in a field named for its view: "
            + ", ".join(VIEW_NAMES),
            fields=[{"loc": ["body", "front"], "message": "no photo"}],
        )
    mesh_data, mesh_format = await read_mesh_file(services, mesh)
    photos: dict[ViewName, tuple[bytes, str]] = {}
    for view in views:
        photos[view] = await read_photo(services, files[view], str(view))
    first, *others = views
    data, media_type = photos[first]
    job_id = uuid.uuid4().hex
    stored = await run_in_threadpool(
        services.store.put_upload,
        job_id,
        data,
        media_type,
        viewer.key_id,
        {view: photos[view] for view in others},
        first,
        (mesh_data, mesh_format),
    )
    job = await services.registry.register_upload(job_id, stored, viewer.key_id)
    services.jobs.apply(job)
    return await submit_run(services, viewer, job_id, texture_request(params), client)


def texture_request(params: TextureMeshParams) -> RunRequest:
    """The run that textures a job's uploaded mesh at ``params``' quality and format."""
    return RunRequest(
        params=GenerationParams(quality=params.quality), format=params.format, generator=GIVEN_MESH
    )


async def read_mesh_file(services: Services, mesh: UploadFile) -> tuple[bytes, str]:
    """The mesh file's bytes and format, through the mesh tools' guards and readers (413
    over the limit or with too many faces, 415 not a mesh file, 400 a broken one), the
    field ``mesh`` named in the error."""
    limits = services.config.mesh_tools
    data = await mesh.read(limits.max_upload_bytes + 1)
    try:
        if len(data) > limits.max_upload_bytes:
            raise PayloadTooLargeError(
                f"the mesh file is larger than {limits.max_upload_bytes} bytes",
                limit_bytes=limits.max_upload_bytes,
            )
        loaded = await run_in_threadpool(read_mesh, data, limits)
    except OrfeasError as exc:
        exc.message = f"mesh: {exc.message}"
        exc.details["field"] = "mesh"
        raise
    return data, str(loaded.format)
