"""Bodies of the mesh-tool, batch and variant routes that ``serve_app.api`` does not define yet.

They follow the routes' published contract: optimize-mesh and apply-material answer with
a variant of the job's model, preview-3d with a PNG, batch-generate with a batch id and its
jobs. Answers are read leniently (fields beyond these are kept); requests are checked with
the service's own bounds and field types (job and variant ids, materials, formats). When
the API defines its own models for these routes, the client imports those instead.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from serve_app.api.meshtools import VariantId
from serve_app.api.schemas import GenerateOptions, JobId
from serve_app.meshtools.materials import HEX_COLOR_PATTERN, CustomMaterial
from serve_app.meshtools.optimize import MAX_TARGET_FACES, MIN_TARGET_FACES

#: Preview sides in pixels, as the renderer takes them.
PREVIEW_SIDE = (64, 2048)
#: Images in one multipart batch.
MAX_BATCH_IMAGES = 16


class OptimizeRequest(BaseModel):
    """``POST /api/optimize-mesh``: decimate (and repair) a completed job's model."""

    model_config = ConfigDict(extra="forbid")

    job_id: JobId
    variant: VariantId | None = None
    target_faces: int = Field(ge=MIN_TARGET_FACES, le=MAX_TARGET_FACES)
    repair: bool = True


class ApplyMaterialRequest(BaseModel):
    """``POST /api/apply-material``: a preset's name, or custom PBR factors."""

    model_config = ConfigDict(extra="forbid")

    job_id: JobId
    variant: VariantId | None = None
    material: str | CustomMaterial


class VariantResponse(BaseModel):
    """A new variant of a job's model (optimize-mesh, apply-material)."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    variant_id: str
    faces: int
    watertight: bool
    downloads: dict[str, str] = Field(description="download URL per format")


class PreviewRequest(BaseModel):
    """``POST /api/preview-3d``: a PNG of the model seen from a direction."""

    model_config = ConfigDict(extra="forbid")

    job_id: JobId
    variant: VariantId | None = None
    width: int = Field(default=512, ge=PREVIEW_SIDE[0], le=PREVIEW_SIDE[1])
    height: int = Field(default=512, ge=PREVIEW_SIDE[0], le=PREVIEW_SIDE[1])
    azimuth_deg: float = Field(default=30.0, allow_inf_nan=False)
    elevation_deg: float = Field(default=20.0, ge=-90.0, le=90.0)
    background: str = Field(default="#ffffff", pattern=f"{HEX_COLOR_PATTERN}|^transparent$")


class BatchFromJobsRequest(BaseModel):
    """``POST /api/batch-generate`` as JSON: run uploaded jobs with the same parameters."""

    model_config = ConfigDict(extra="forbid")

    job_ids: list[JobId] = Field(min_length=1, max_length=MAX_BATCH_IMAGES)
    params: GenerateOptions = Field(default_factory=GenerateOptions)


class BatchJob(BaseModel):
    """One job of a batch: admitted (its status), or refused (``error`` says why)."""

    model_config = ConfigDict(extra="allow")

    job_id: str | None = None
    status: str
    error: dict[str, Any] | None = None


class BatchResponse(BaseModel):
    """``POST /api/batch-generate`` (202)."""

    model_config = ConfigDict(extra="allow")

    batch_id: str
    jobs: list[BatchJob]


class BatchStatusResponse(BaseModel):
    """``GET /api/batches/{batch_id}``."""

    model_config = ConfigDict(extra="allow")

    batch_id: str | None = None
    status: str
    progress: float
    counts: dict[str, int]
    jobs: list[BatchJob]
