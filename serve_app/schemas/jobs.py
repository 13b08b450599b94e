"""Request and response bodies of the HTTP API's job routes, plain pydantic (the API and
the client both use them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_app.contracts.jobs import JOB_ID_PATTERN, JobStatus
from serve_app.contracts.params import (
    OUTPUT_FORMATS,
    GenerationParams,
    OutputFormat,
)
from serve_app.contracts.variants import VARIANT_ID_PATTERN, VariantInfo
from serve_app.contracts.views import ViewName

JobId = Annotated[
    str,
    Field(pattern=JOB_ID_PATTERN, description="32 lowercase hex characters"),
]
VariantId = Annotated[
    str,
    Field(pattern=VARIANT_ID_PATTERN, description="64 lowercase hex: a variant of the job"),
]


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="stable machine-readable name, e.g. job_not_found")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class CheckResult(BaseModel):
    ok: bool
    detail: str | None = None


class ReadinessResponse(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, CheckResult]


class ViewInfo(BaseModel):
    """One photo of a job's subject: which view it is and the stored file's hash."""

    view: ViewName
    sha256: str = Field(description="content hash of the stored photo")
    size_bytes: int
    media_type: str


class UploadResponse(BaseModel):
    job_id: str
    status: JobStatus
    sha256: str = Field(description="content hash of the stored image")
    size_bytes: int
    media_type: str
    views: list[ViewInfo] = Field(
        default_factory=list,
        description="every photo of the job, the front (the image) first, then the other "
        "views uploaded with it",
    )


GENERATOR_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class GenerateOptions(GenerationParams):
    """How a job's picture becomes a model: ``POST /api/generate-3d``'s body without
    ``job_id`` (also ``generate_3d`` of ``POST /api/text-to-image``).

    The generator parameters are GenerationParams' own fields (range, default and doc
    written there once) and optional: what is left out comes from the generator's
    defaults for ``quality``; a parameter the chosen generator does not take is a 422.
    """

    model_config = ConfigDict(extra="forbid", frozen=False)

    format: OutputFormat = "glb"
    generator: str | None = Field(
        default=None,
        pattern=GENERATOR_NAME,
        description="shape generator, one of those enabled (GET /api/generators): inflate "
        "(silhouette inflation) or hunyuan3d (Hunyuan3D-2); default: the service's default",
    )

    def params(self) -> GenerationParams:
        """The parameters as asked (the generator fills in what is left out)."""
        return GenerationParams(
            **{name: getattr(self, name) for name in GenerationParams.model_fields}
        )


#: Longest ``callback_url`` accepted by the schema (``webhooks.max_url_chars`` may be lower).
MAX_CALLBACK_URL = 2048


class Callback(BaseModel):
    """An optional webhook: every route that starts a job or batch takes it by using this
    model, so a new one gets the same field (``POST /api/generate-3d``, text-to-image,
    batch-generate, texture-mesh)."""

    callback_url: str | None = Field(
        default=None,
        min_length=8,
        max_length=MAX_CALLBACK_URL,
        description="https URL the final status is POSTed to when the job (or batch) ends: "
        "completed, failed or cancelled; signed (Orfeas-Signature: HMAC-SHA256 over "
        "Orfeas-Timestamp, a dot and the body), retried with backoff; attempts at "
        "GET /api/jobs/{job_id}/deliveries",
        examples=["https://example.com/hooks/orfeas"],
    )


class TextureMeshParams(Callback):
    """The ``params`` part of ``POST /api/texture-mesh``: how the textured model is made."""

    model_config = ConfigDict(extra="forbid")

    format: OutputFormat = "glb"
    quality: int = Field(default=5, ge=1, le=10, description="1 (fast) to 10 (fine texture)")


class GenerateRequest(GenerateOptions, Callback):
    """``POST /api/generate-3d``: which uploaded job to run, and how."""

    job_id: JobId


class GeneratorInfo(BaseModel):
    """One enabled shape generator, as the service runs it."""

    name: str
    summary: str
    default: bool = Field(description="used when a request names no generator")
    loaded: bool = Field(description="a ShapeTexture replica has loaded it")
    version: str | None = Field(description="what the cache key and job results carry")
    error: str | None = Field(description="why it could not be loaded, if it could not")
    parameters: list[str] = Field(description="the generate-3d parameters it takes")
    device: str = Field(
        description="where this deployment's replicas run it: cpu, cuda, or auto (CUDA "
        "where the replica has it)"
    )
    defaults: list[dict[str, int | float]] = Field(
        description="its parameters' defaults at quality 1..10 here (hunyuan3d: for the "
        "checkpoint's variant and the replicas' device; without CUDA octree_resolution 128)"
    )
    note: str | None = Field(default=None, description="what sets those defaults, in words")


class GeneratorsResponse(BaseModel):
    default: str
    generators: list[GeneratorInfo]


class TextToImageStatus(BaseModel):
    """A text job's picture: the prompt as a hash and a length (never its text), and the
    parameters it is made with (as made once it is, the seed drawn if none was given)."""

    prompt_sha256: str = Field(description="sha256 hex of the prompt's UTF-8 bytes")
    prompt_chars: int = Field(description="the prompt's length in characters")
    negative_prompt_sha256: str | None = None
    negative_prompt_chars: int | None = None
    seed: int | None
    steps: int | None
    guidance_scale: float | None
    width: int | None = Field(description="pixels; null until made: the model's native size")
    height: int | None
    made: bool = Field(description="the picture exists (GET image_url)")
    cached: bool = Field(default=False, description="the picture came from the image cache")
    model_version: str | None = Field(default=None, description="the model that made it")


def download_url(job_id: str, fmt: str, variant: str | None = None) -> str:
    """Where the job's model (or one of its variants) is downloaded as ``fmt``."""
    url = f"/download/{job_id}/{fmt}"
    return f"{url}?variant={variant}" if variant else url


class VariantResponse(BaseModel):
    """A version of a completed job's model made by optimize-mesh or apply-material."""

    variant_id: str = Field(description="its content address: same recipe, same id")
    operation: Literal["optimize", "material"]
    params: dict[str, Any] = Field(description="the operation's parameters, as applied")
    base: str | None = Field(description="the variant it was made from; null: the job's model")
    faces: int
    watertight: bool | None = Field(description="the variant is a closed surface")
    created_at: datetime
    downloads: dict[str, str] = Field(description="download URL per format")

    @classmethod
    def of(cls, job_id: str, variant: VariantInfo) -> VariantResponse:
        return cls(
            variant_id=variant.variant_id,
            operation=variant.operation,  # type: ignore[arg-type]
            params=variant.params,
            base=variant.base,
            faces=variant.faces,
            watertight=variant.watertight,
            created_at=as_datetime(variant.created_at),
            downloads={f: download_url(job_id, f, variant.variant_id) for f in OUTPUT_FORMATS},
        )


class JobStatusResponse(BaseModel):
    """A job as clients see it: status, progress, error and download links."""

    job_id: str
    status: JobStatus
    run: int = Field(description="number of generation runs started for this job")
    source: Literal["upload", "prompt"] = Field(
        default="upload", description="where the job's picture comes from"
    )
    stages: list[str] = Field(
        default_factory=list,
        description="the stages of the current run, in order (text_to_image first in a "
        "text run); empty before the first run",
    )
    stage: str | None
    progress: float = Field(
        description="0 to 100 across all the run's stages, never decreasing within a run; "
        "100 only once it completed"
    )
    eta_seconds: float | None = Field(
        description="seconds until the run ends, from measured stage durations"
    )
    queue_position: int | None = Field(
        default=None, description="1 for the next run to start, while queued"
    )
    stage_durations: dict[str, float] = Field(
        default_factory=dict, description="seconds per finished stage of the run"
    )
    cancel_requested: bool = Field(default=False, description="a cancel was asked for")
    error: dict[str, Any] | None
    format: OutputFormat | None
    quality: int | None
    generator: str | None = Field(default=None, description="the run's shape generator")
    views: list[ViewInfo] = Field(
        default_factory=list,
        description="the job's photos by view (front first); empty until it has a picture",
    )
    parameters: dict[str, int | float] = Field(
        default_factory=dict,
        description="the generator parameters the run uses, defaults filled in",
    )
    generator_version: str | None = Field(
        default=None, description="version of the generator that made the model"
    )
    watertight: bool | None = Field(
        default=None, description="the model is a closed surface (checked on the mesh)"
    )
    cached: bool = Field(description="completed from the content-addressed cache")
    download_url: str | None = Field(description="the requested format, once completed")
    outputs: dict[str, str] = Field(description="download URL per format, once completed")
    image_url: str | None = Field(
        default=None, description="the job's picture (uploaded, or made from its prompt)"
    )
    text_to_image: TextToImageStatus | None = Field(
        default=None, description="a text job's prompt (hash and length) and picture"
    )
    thumbnail_url: str | None = Field(
        default=None, description="a picture of the model (PNG), once completed"
    )
    variants: list[VariantResponse] = Field(
        default_factory=list,
        description="versions of the model made by optimize-mesh and apply-material",
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobListResponse(BaseModel):
    jobs: list[JobStatusResponse]
    total: int
    offset: int
    limit: int


def as_datetime(epoch_s: float) -> datetime:
    """A time in seconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(epoch_s, tz=UTC)


class JobLogEntry(BaseModel):
    time: datetime
    run: int
    event: str = Field(description="e.g. queued, stage_started, stage_finished, completed")
    stage: str | None
    message: str


class JobLogResponse(BaseModel):
    """A job's recent events, oldest first; ``dropped`` older ones no longer kept."""

    job_id: str
    entries: list[JobLogEntry]
    dropped: int
