"""Request and response bodies of the HTTP API (the seed contract)."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_app.pipeline.types import OUTPUT_FORMATS, Dimensions, GenerationParams, OutputFormat
from serve_app.registry.feeds import JobLog
from serve_app.registry.jobs import JOB_ID_PATTERN, JobSnapshot, JobStatus

JobId = Annotated[
    str,
    Field(pattern=JOB_ID_PATTERN, description="32 lowercase hex characters"),
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


class UploadResponse(BaseModel):
    job_id: str
    status: JobStatus
    sha256: str = Field(description="content hash of the stored image")
    size_bytes: int
    media_type: str


class GenerateRequest(BaseModel):
    """``POST /api/generate-3d``: which uploaded job to run, and how."""

    model_config = ConfigDict(extra="forbid")

    job_id: JobId
    format: OutputFormat = "glb"
    quality: int = Field(default=5, ge=1, le=10, description="1 (fast) to 10 (fine)")
    dimensions: Dimensions = Field(default_factory=Dimensions)

    def params(self) -> GenerationParams:
        return GenerationParams(quality=self.quality, dimensions=self.dimensions)


class JobStatusResponse(BaseModel):
    """A job as clients see it: status, progress, error and download links."""

    job_id: str
    status: JobStatus
    run: int = Field(description="number of generation runs started for this job")
    stage: str | None
    progress: float = Field(description="0 to 100, never decreasing within a run")
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
    cached: bool = Field(description="completed from the content-addressed cache")
    download_url: str | None = Field(description="the requested format, once completed")
    outputs: dict[str, str] = Field(description="download URL per format, once completed")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_snapshot(cls, job: JobSnapshot) -> JobStatusResponse:
        request, result = job.request, job.result
        completed = job.status is JobStatus.COMPLETED
        outputs: dict[str, str] = (
            {fmt: f"/download/{job.job_id}/{fmt}" for fmt in OUTPUT_FORMATS} if completed else {}
        )
        return cls(
            job_id=job.job_id,
            status=job.status,
            run=job.run,
            stage=job.stage,
            progress=job.progress,
            eta_seconds=job.eta_seconds,
            queue_position=job.queue_position,
            stage_durations=job.stage_durations,
            cancel_requested=job.cancel_requested,
            error=job.error,
            format=request.format if request else None,
            quality=request.params.quality if request else None,
            cached=bool(result and result.cached),
            download_url=outputs.get(request.format) if request else None,
            outputs=outputs,
            created_at=_time(job.created_at),
            updated_at=_time(job.updated_at),
            started_at=_time(job.started_at) if job.started_at else None,
            finished_at=_time(job.finished_at) if job.finished_at else None,
        )


class StatusBodies:
    """The JSON body of each job's current snapshot, rendered once per snapshot.

    A job view replaces a job's snapshot object on every change, so the body held for
    the very same object is that snapshot's body; many polls of an unchanged job cost one
    rendering. Holds the ``size`` most recently rendered jobs.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._bodies: OrderedDict[str, tuple[JobSnapshot, bytes]] = OrderedDict()

    def body(self, job: JobSnapshot) -> bytes:
        held = self._bodies.get(job.job_id)
        if held is not None and held[0] is job:
            return held[1]
        body = JobStatusResponse.from_snapshot(job).model_dump_json().encode()
        self._bodies[job.job_id] = (job, body)
        self._bodies.move_to_end(job.job_id)
        while len(self._bodies) > self.size:
            self._bodies.popitem(last=False)
        return body


class JobListResponse(BaseModel):
    jobs: list[JobStatusResponse]
    total: int
    offset: int
    limit: int


def _time(epoch_s: float) -> datetime:
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

    @classmethod
    def from_log(cls, log: JobLog) -> JobLogResponse:
        return cls(
            job_id=log.job_id,
            entries=[
                JobLogEntry(
                    time=_time(e.time), run=e.run, event=e.event, stage=e.stage, message=e.message
                )
                for e in log.entries
            ],
            dropped=log.dropped,
        )
