"""Limits of the mesh tools: how big a mesh file may be, how many faces it may have, the
face targets of decimation and the sizes of previews."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: Face targets of decimation (inclusive).
MIN_TARGET_FACES, MAX_TARGET_FACES = 100, 1_000_000
#: Sides of a preview image in pixels (inclusive).
MIN_SIDE, MAX_SIDE = 64, 2048
#: The background of a preview that is no colour: alpha 0 off the model.
TRANSPARENT = "transparent"


class MeshLimits(BaseModel):
    """Checked before a mesh file's bytes reach a parser, and again on what it parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_upload_bytes: int = Field(
        default=64 * 1024 * 1024, gt=0, description="largest mesh file accepted for analysis"
    )
    max_faces: int = Field(
        default=2_000_000, gt=0, description="triangles (after splitting polygons)"
    )
    max_vertices: int = Field(default=2_000_000, gt=0)
    max_gltf_nodes: int = Field(
        default=10_000, gt=0, description="nodes of a GLB's scene graph (each may place a mesh)"
    )
