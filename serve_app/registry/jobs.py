"""The registry's job records and what it reports of them: snapshots, pages, viewers."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.runs import RunRequest, RunResult, StoredImage, UploadInfo
from serve_app.contracts.stages import RunPlan, Stage
from serve_app.contracts.text import TextToImageParams
from serve_app.contracts.variants import VariantInfo


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


#: The snapshot's fields it takes from the record as they are; ``JobRecord.snapshot`` sets
#: the others (a rounded progress, copies of the mutable ones; no queue place or version).
_AS_RECORDED = tuple(
    f.name
    for f in fields(JobSnapshot)
    if f.name not in {"progress", "stage_durations", "variants", "queue_position", "version"}
)


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
            **{name: getattr(self, name) for name in _AS_RECORDED},
            progress=round(self.progress, 1),
            stage_durations=dict(self.stage_durations),
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
