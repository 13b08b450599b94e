"""The parts routes declare alike: path and query parameters, and their error answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from serve_app.contracts.jobs import JOB_ID_PATTERN
from serve_app.contracts.variants import VARIANT_ID_PATTERN
from serve_app.schemas.jobs import ErrorResponse

JobIdPath = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="32 lowercase hex")]
#: A batch id has the shape of a job id.
BatchIdPath = JobIdPath
VariantQuery = Annotated[
    str | None,
    Query(pattern=VARIANT_ID_PATTERN, description="a variant of the job's model (64 hex)"),
]
KeepaliveQuery = Annotated[
    float, Query(ge=0.5, le=60.0, description="seconds of silence before a keep-alive")
]
#: Seconds of silence after which a stream sends a keep-alive.
KEEPALIVE_S = 10.0


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route (or router) that may answer ``codes`` with an error body."""
    return {code: {"model": ErrorResponse} for code in codes}


#: The media types of the mesh files the mesh tools read (STL, OBJ, PLY, GLB).
MESH_MEDIA_TYPES = ("model/stl", "model/obj", "application/ply", "model/gltf-binary")
