"""The job model: statuses and the one table of legal transitions, requests, results, records."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from serve_app.errors import ValidationFailedError
from serve_app.pipeline.text_params import TextToImageParams
from serve_app.pipeline.types import GenerationParams, OutputFormat, RunPlan, Stage

JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)


def is_job_id(value: str) -> bool:
    """True for 32 lowercase hex characters, the only accepted job id."""
    return bool(_JOB_ID_RE.fullmatch(value))


def check_job_id(value: str) -> str:
    """Return ``value`` if it is a job id; raise a 422 before it can reach storage."""
    if not is_job_id(value):
        raise ValidationFailedError("job_id must be 32 lowercase hexadecimal characters")
    return value


class JobStatus(StrEnum):
    """Where a job stands. ``queued`` and ``running`` are active; the last three end a run."""

    UPLOADED = "uploaded"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """A run is under way: it holds a lease and counts against the queue bounds."""
        return self in ACTIVE_STATUSES

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


#: The one definition of "active": a run was accepted and has not ended.
ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

#: Every legal transition. A new run may start from ``uploaded`` or from any ended run;
#: a running run goes back to ``queued`` only when it is retried after its worker was lost.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.UPLOADED: frozenset({JobStatus.QUEUED}),
    JobStatus.QUEUED: frozenset(
        {JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.RUNNING: frozenset(
        {JobStatus.QUEUED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.COMPLETED: frozenset({JobStatus.QUEUED}),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
}


def can_transition(source: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[source]


@dataclass(frozen=True)
class UploadInfo:
    """A stored upload: its content hash and what was sniffed from its bytes."""

    sha256: str
    size_bytes: int
    media_type: str


@dataclass(frozen=True)
class RunRequest:
    """What one run of a job is asked to produce; ``params`` as resolved for ``generator``
    (every parameter it takes filled in), so equal requests have equal cache keys."""

    params: GenerationParams
    format: OutputFormat
    generator: str


@dataclass(frozen=True)
class JobTicket:
    """Everything a worker deployment needs for one run; small, no pixels.

    ``generator_version`` and ``artifact_key`` (the cache key of the run's canonical mesh)
    are set by the registry when it dispatches the run, the one place the key is computed;
    the ShapeTexture replica checks that its generator has that version and stores the
    mesh under that key.
    """

    job_id: str
    run: int
    upload: UploadInfo
    request: RunRequest
    generator_version: str | None = None
    artifact_key: str | None = None


@dataclass(frozen=True)
class ImageTicket:
    """What the TextToImage deployment needs for a text run's picture; small, no pixels.

    ``owner`` (the job's API key id, if any) is recorded beside the picture it stores.
    """

    job_id: str
    run: int
    params: TextToImageParams
    owner: str | None = None


@dataclass(frozen=True)
class StoredImage:
    """Where a text run's PNG was stored, and how it was made.

    ``upload`` is the image as the job's input (content-addressed under ``uploads/``, as
    if uploaded); ``key`` its text-to-image cache key; ``params`` the resolved parameters
    (the seed that was used, the size that was made); ``cached``: it was made before.
    """

    key: str
    upload: UploadInfo
    params: TextToImageParams
    model_version: str
    cached: bool
    seconds: float


@dataclass(frozen=True)
class TextModel:
    """What a TextToImage replica reports of its model: the version (part of every image
    cache key) and the native image side (the size of a request that gives none)."""

    version: str
    native_size: int


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports: where the canonical mesh lives and how it was made."""

    artifact_key: str
    formats: tuple[str, ...]
    generator: str
    generator_version: str
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    #: Whether the mesh is closed (checked on the mesh itself); None: not known.
    watertight: bool | None = None


@dataclass(frozen=True)
class VariantInfo:
    """A new version of a completed job's model, made by ``operation`` with ``params``.

    ``variant_id`` is its content address (64 hex, also the store key of its mesh);
    ``base`` the variant it was made from, None for the job's own model.
    """

    variant_id: str
    operation: str
    params: dict[str, Any]
    base: str | None
    faces: int
    watertight: bool | None
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class VariantOrder:
    """What the MeshTools deployment is asked to make: the variant ``variant_id`` of
    ``job_id`` from the mesh stored under ``base_key`` (the job's model, or the variant
    ``base``), by ``operation`` with ``params``."""

    job_id: str
    variant_id: str
    base: str | None
    base_key: str
    operation: str
    params: dict[str, Any]


@dataclass(frozen=True)
class VariantBuilt:
    """What the MeshTools deployment reports of a variant it stored."""

    faces: int
    watertight: bool | None


@dataclass(frozen=True)
class JobSnapshot:
    """A read-only copy of a job, as the API reports it.

    ``version`` orders the snapshots of one job: the registry's change-feed position of
    the change it shows (0: never published). ``owner`` is the id of the API key that
    uploaded the job (None without keys).
    """

    job_id: str
    status: JobStatus
    run: int
    stage: Stage | None
    progress: float
    eta_seconds: float | None
    error: dict[str, Any] | None
    upload: UploadInfo | None
    request: RunRequest | None
    result: RunResult | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    queue_position: int | None = None
    stage_durations: dict[str, float] = field(default_factory=dict)
    cancel_requested: bool = False
    owner: str | None = None
    version: int = 0
    plan: RunPlan = RunPlan.MODEL
    text: TextToImageParams | None = None
    image: StoredImage | None = None
    #: Variants of the completed run's model, oldest first.
    variants: tuple[VariantInfo, ...] = ()


@dataclass
class JobRecord:
    """The registry's mutable record of one job; ``JobTable`` makes every change to it."""

    job_id: str
    #: The job's picture: an upload, or the one its text run made (None until then).
    upload: UploadInfo | None
    status: JobStatus = JobStatus.UPLOADED
    run: int = 0
    stage: Stage | None = None
    progress: float = 0.0
    eta_seconds: float | None = None
    error: dict[str, Any] | None = None
    request: RunRequest | None = None
    result: RunResult | None = None
    cancel_requested: bool = False
    #: The API key id that uploaded the job; only that key (and admins) may see it.
    owner: str | None = None
    #: Who submitted the current run (an API key id or a client address), for fair shares.
    client: str | None = None
    #: Re-runs of the current request after a lost worker or a registry restart.
    retries: int = 0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    #: Seconds each stage of the current run took (the current one once it ends).
    stage_durations: dict[str, float] = field(default_factory=dict)
    stage_started_at: float | None = None
    #: Which stages the current run goes through.
    plan: RunPlan = RunPlan.MODEL
    #: A text job's picture request (its seed drawn when it was submitted); None for a
    #: job made by an upload.
    text: TextToImageParams | None = None
    #: How a text job's picture was made, once it is (the picture is ``upload`` too).
    image: StoredImage | None = None

    @property
    def dispatchable(self) -> bool:
        """The current run holds what its plan needs: a prompt to draw (else a picture), and
        a request when it makes a model."""
        plan = self.plan
        source = self.text if plan.makes_image else self.upload
        return source is not None and (not plan.makes_model or self.request is not None)

    #: Variants of the completed run's model by id, oldest first (a new run clears them).
    variants: dict[str, VariantInfo] = field(default_factory=dict)

    def snapshot(self) -> JobSnapshot:
        return JobSnapshot(
            job_id=self.job_id,
            status=self.status,
            run=self.run,
            stage=self.stage,
            progress=round(self.progress, 1),
            eta_seconds=self.eta_seconds,
            error=self.error,
            upload=self.upload,
            request=self.request,
            result=self.result,
            created_at=self.created_at,
            updated_at=self.updated_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            stage_durations=dict(self.stage_durations),
            cancel_requested=self.cancel_requested,
            owner=self.owner,
            plan=self.plan,
            text=self.text,
            image=self.image,
            variants=tuple(self.variants.values()),
        )


@dataclass(frozen=True)
class JobPage:
    """One page of jobs, newest first."""

    jobs: tuple[JobSnapshot, ...]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class Viewer:
    """Whose jobs a caller may see and act on.

    Without API keys everyone sees every job; with keys a job belongs to the key that
    uploaded it (``key_id``), and only that key, or an admin key (``sees_all``), sees it.
    """

    key_id: str | None = None
    sees_all: bool = True

    def may_see(self, owner: str | None) -> bool:
        return self.sees_all or (owner is not None and owner == self.key_id)


#: The viewer of a service without keys (and of the registry's own tools).
EVERYONE = Viewer()


def page_of(
    newest_first: Iterable[JobSnapshot],
    offset: int,
    limit: int,
    status: JobStatus | None,
    viewer: Viewer,
) -> JobPage:
    """One page of the jobs ``viewer`` may see, with ``status`` if given."""
    chosen: list[JobSnapshot] = []
    total = 0
    for job in newest_first:
        if (status is None or job.status is status) and viewer.may_see(job.owner):
            if offset <= total < offset + limit:
                chosen.append(job)
            total += 1
    return JobPage(jobs=tuple(chosen), total=total, offset=offset, limit=limit)
