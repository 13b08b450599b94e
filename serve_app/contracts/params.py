"""What a generation is asked for: output formats, dimensions, the generator parameters."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

OutputFormat = Literal["glb", "obj", "stl", "ply"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("glb", "obj", "stl", "ply")

MAX_DIMENSION_MM = 10_000.0


class Dimensions(BaseModel):
    """Requested model size in millimetres; unset axes follow the model's aspect ratio."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: float | None = Field(default=None, gt=0, le=MAX_DIMENSION_MM, description="X extent, mm")
    height: float | None = Field(
        default=None, gt=0, le=MAX_DIMENSION_MM, description="Y extent, mm"
    )
    depth: float | None = Field(default=None, gt=0, le=MAX_DIMENSION_MM, description="Z extent, mm")

    @field_validator("width", "height", "depth")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number of millimetres")
        return value


#: Bounds of the generator parameters (inclusive), shared by the API schema and the CLI.
SEED_MAX = 2**32 - 1
STEPS_RANGE = (1, 100)
GUIDANCE_RANGE = (0.0, 20.0)
OCTREE_RANGE = (16, 512)
NUM_CHUNKS_RANGE = (1_000, 100_000)
MC_LEVEL_RANGE = (-1.0, 1.0)
FACE_COUNT_RANGE = (500, 1_000_000)

#: The parameters some generator takes besides quality and dimensions; None means "the
#: generator's default for the quality" until the generator resolves it.
TUNABLE_PARAMETERS: tuple[str, ...] = (
    "seed",
    "steps",
    "guidance_scale",
    "octree_resolution",
    "num_chunks",
    "mc_level",
    "face_count",
)


class GenerationParams(BaseModel):
    """What a generation is asked for; once resolved by its generator (every parameter it
    takes filled in, defaults from ``quality``), part of the content-addressed cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quality: int = Field(default=5, ge=1, le=10, description="1 (fast, coarse) to 10 (fine)")
    dimensions: Dimensions = Field(default_factory=Dimensions)
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    steps: int | None = Field(default=None, ge=STEPS_RANGE[0], le=STEPS_RANGE[1])
    guidance_scale: float | None = Field(
        default=None, ge=GUIDANCE_RANGE[0], le=GUIDANCE_RANGE[1], allow_inf_nan=False
    )
    octree_resolution: int | None = Field(default=None, ge=OCTREE_RANGE[0], le=OCTREE_RANGE[1])
    num_chunks: int | None = Field(default=None, ge=NUM_CHUNKS_RANGE[0], le=NUM_CHUNKS_RANGE[1])
    mc_level: float | None = Field(
        default=None, ge=MC_LEVEL_RANGE[0], le=MC_LEVEL_RANGE[1], allow_inf_nan=False
    )
    face_count: int | None = Field(default=None, ge=FACE_COUNT_RANGE[0], le=FACE_COUNT_RANGE[1])

    def given(self) -> dict[str, int | float]:
        """The generator parameters that are set (not left to the generator's defaults)."""
        return {
            name: getattr(self, name)
            for name in TUNABLE_PARAMETERS
            if getattr(self, name) is not None
        }
