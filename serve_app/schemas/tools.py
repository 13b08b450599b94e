"""Bodies of the mesh-tool, variant, batch and text-to-image routes: plain pydantic models,
importable without FastAPI (the client and the CLI use them as they are)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_app.contracts.meshtools import CustomMaterial, Material
from serve_app.contracts.text import TextToImageParams
from serve_app.meshtools.config import MAX_TARGET_FACES, MIN_TARGET_FACES
from serve_app.meshtools.variants import PreviewView
from serve_app.schemas.jobs import Callback, GenerateOptions, JobId, VariantId

#: Photos (or job ids) in one batch.
MAX_BATCH = 16


# -- analysis and materials ------------------------------------------------------------


class AnalyzeJobRequest(BaseModel):
    """``POST /api/analyze-stl`` as JSON: analyse a completed job's model."""

    model_config = ConfigDict(extra="forbid")

    job_id: JobId
    variant: VariantId | None = None


class MaterialsResponse(BaseModel):
    presets: list[Material]


# -- variants and previews ------------------------------------------------------------


class VariantRequest(BaseModel):
    """Which model a variant is made from: the job's own, or one of its variants."""

    model_config = ConfigDict(extra="forbid")

    job_id: JobId
    variant: VariantId | None = Field(
        default=None, description="start from this variant of the job instead of its model"
    )


class OptimizeParams(BaseModel):
    """What an optimize variant is made with: its recipe's parameters."""

    target_faces: int = Field(
        ge=MIN_TARGET_FACES, le=MAX_TARGET_FACES, description="at most this many triangles"
    )
    repair: bool = Field(
        default=True,
        description="first remove duplicate and degenerate faces, split non-manifold parts, "
        "close holes of up to 100 edges and wind the faces outwards",
    )


class OptimizeRequest(OptimizeParams, VariantRequest):
    """``POST /api/optimize-mesh``: fewer faces, the model kept closed and textured."""

    def params(self) -> dict[str, Any]:
        """The recipe's parameters: the :class:`OptimizeParams` fields."""
        return self.model_dump(include=set(OptimizeParams.model_fields))


class MaterialRequest(VariantRequest):
    """``POST /api/apply-material``: a preset's finish, or custom factors and colour."""

    material: Annotated[str, Field(max_length=64)] | CustomMaterial = Field(
        description='a preset name (GET /api/materials) or {"base_color": "#rrggbb"?, '
        '"metallic": 0..1, "roughness": 0..1}'
    )


class VariantMade(BaseModel):
    """The variant asked for: made now, or made before by the same request."""

    job_id: str
    variant_id: str
    operation: str
    params: dict[str, Any]
    base: str | None
    faces: int
    watertight: bool | None
    downloads: dict[str, str]


class PreviewRequest(PreviewView, VariantRequest):
    """``POST /api/preview-3d``: a picture of the textured model, lit and framed."""


# -- batches -------------------------------------------------------------------------


class BatchJobsRequest(Callback):
    """``POST /api/batch-generate`` as JSON: run uploaded jobs with one set of options."""

    model_config = ConfigDict(extra="forbid")

    job_ids: list[JobId] = Field(min_length=1, max_length=MAX_BATCH)
    params: GenerateOptions = Field(default_factory=GenerateOptions)


class BatchEntry(BaseModel):
    """One photo or job of a batch, as the batch was made."""

    index: int = Field(description="its place in the request, from 0")
    job_id: str | None = Field(description="null when the photo was refused (no job made)")
    status: str = Field(description='the job\'s status, or "rejected"')
    error: dict[str, Any] | None = Field(default=None, description="why it was refused")


class BatchCreated(BaseModel):
    batch_id: str
    jobs: list[BatchEntry]


class BatchJob(BatchEntry):
    """One entry of a batch now: its job's status and progress (or why it has none)."""

    progress: float = Field(description="0 to 100")
    download_url: str | None = None
    thumbnail_url: str | None = None


class BatchStatus(BaseModel):
    """A batch now, from its jobs."""

    batch_id: str
    status: Literal["running", "completed", "partial", "failed"] = Field(
        description="running while a job is queued or running; then completed (every job), "
        "partial (some) or failed (none completed)"
    )
    progress: float = Field(description="0 to 100: ended entries count whole")
    counts: dict[str, int] = Field(description="entries per status (rejected, expired too)")
    jobs: list[BatchJob]
    created_at: float


# -- text to image -------------------------------------------------------------------


class TextToImageRequest(TextToImageParams, Callback):
    """``POST /api/text-to-image``: the picture to make, and optionally the model to make
    of it (``generate_3d``) in the same job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generate_3d: GenerateOptions | None = Field(
        default=None,
        description="go on to a 3D model of the picture in the same run, under the same "
        "job id: generate-3d's body without job_id",
    )

    def params(self) -> TextToImageParams:
        return TextToImageParams.model_validate(
            self.model_dump(exclude={"generate_3d", "callback_url"})
        )
