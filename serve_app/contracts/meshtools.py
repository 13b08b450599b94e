"""What the mesh tools take and report: materials and a mesh's printability analysis."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

HEX_COLOR_PATTERN = r"^#[0-9a-fA-F]{6}$"
HexColor = Annotated[str, Field(pattern=HEX_COLOR_PATTERN, examples=["#c0392b"])]
#: The name a custom material is stored under.
CUSTOM = "custom"


class Material(BaseModel):
    """A resolved material: what is applied and written to every format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description='a preset\'s name, or "custom"')
    base_color: HexColor | None = Field(
        default=None, description="sRGB colour replacing the texture; null keeps the texture"
    )
    metallic: float = Field(ge=0, le=1, description="glTF metallicFactor")
    roughness: float = Field(ge=0, le=1, description="glTF roughnessFactor")
    description: str = ""


class CustomMaterial(BaseModel):
    """A material given by its factors instead of a preset's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_color: HexColor | None = Field(
        default=None, description="sRGB colour replacing the texture; omit to keep it"
    )
    metallic: float = Field(ge=0, le=1)
    roughness: float = Field(ge=0, le=1)


class BoundingBox(BaseModel):
    x: float = Field(description="extent along X, mm")
    y: float = Field(description="extent along Y (up), mm")
    z: float = Field(description="extent along Z, mm")


class Issue(BaseModel):
    code: str = Field(description="stable name, e.g. open_surface")
    message: str


class MeshAnalysis(BaseModel):
    """What ``POST /api/analyze-stl`` answers."""

    format: str = Field(description='stl, obj, ply, glb, or "canonical" for a job\'s model')
    triangles: int
    vertices: int = Field(description="distinct positions")
    bounding_box_mm: BoundingBox
    volume_mm3: float | None = Field(
        description="enclosed volume; null unless closed and consistently wound"
    )
    surface_area_mm2: float
    watertight: bool = Field(description="every edge is shared by exactly two faces")
    winding_consistent: bool = Field(description="neighbours traverse shared edges oppositely")
    boundary_edges: int = Field(description="edges of one face only: the rims of holes")
    non_manifold_edges: int = Field(description="edges of more than two faces")
    components: int = Field(description="connected pieces")
    degenerate_faces: int = Field(description="faces of zero area")
    printable: bool
    issues: list[Issue] = Field(description="each reason the mesh is not printable")
