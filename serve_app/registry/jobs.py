"""Job states, the one table of legal transitions, and the in-memory job table."""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from serve_app.errors import (
    JobCancelledError,
    JobConflictError,
    JobNotFoundError,
    ValidationFailedError,
)
from serve_app.pipeline.types import GenerationParams, OutputFormat, Stage, overall_progress

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
        return self in ACTIVE_STATUSES

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


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
    """What one run of a job is asked to produce."""

    params: GenerationParams
    format: OutputFormat
    generator: str


@dataclass(frozen=True)
class JobTicket:
    """Everything a worker deployment needs for one run; small, no pixels."""

    job_id: str
    run: int
    upload: UploadInfo
    request: RunRequest


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports: where the canonical mesh lives and how it was made."""

    artifact_key: str
    formats: tuple[str, ...]
    generator: str
    generator_version: str
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False


@dataclass(frozen=True)
class JobSnapshot:
    """A read-only copy of a job, as the API reports it."""

    job_id: str
    status: JobStatus
    run: int
    stage: str | None
    progress: float
    eta_seconds: float | None
    error: dict[str, Any] | None
    upload: UploadInfo
    request: RunRequest | None
    result: RunResult | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    queue_position: int | None = None
    stage_durations: dict[str, float] = field(default_factory=dict)
    cancel_requested: bool = False


@dataclass
class JobRecord:
    """The registry's mutable record of one job. Only ``transition`` changes ``status``."""

    job_id: str
    upload: UploadInfo
    status: JobStatus = JobStatus.UPLOADED
    run: int = 0
    stage: str | None = None
    progress: float = 0.0
    eta_seconds: float | None = None
    error: dict[str, Any] | None = None
    request: RunRequest | None = None
    result: RunResult | None = None
    cancel_requested: bool = False
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

    def transition(self, target: JobStatus) -> None:
        if not can_transition(self.status, target):
            raise JobConflictError(
                f"job {self.job_id} cannot go from {self.status} to {target}",
                status=str(self.status),
            )
        now = time.time()
        self.status = target
        self.updated_at = now
        if target is JobStatus.RUNNING:
            self.started_at = now
        elif target.terminal:
            self.finished_at = now

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
        )

    def enter_stage(self, stage: Stage, now: float) -> bool:
        """Move to ``stage`` if it comes after the current one; True when it did."""
        order = list(Stage)
        if self.stage is not None and order.index(stage) <= order.index(Stage(self.stage)):
            return False
        self.end_stage(now)
        self.stage = str(stage)
        self.stage_started_at = now
        return True

    def end_stage(self, now: float) -> None:
        """Record how long the current stage took (once)."""
        if self.stage is not None and self.stage_started_at is not None:
            self.stage_durations[self.stage] = round(max(0.0, now - self.stage_started_at), 4)
        self.stage_started_at = None


@dataclass(frozen=True)
class JobPage:
    """One page of jobs, newest first."""

    jobs: tuple[JobSnapshot, ...]
    total: int
    offset: int
    limit: int


class JobTable:
    """Jobs by id, oldest first; every state change of a job goes through here.

    Not thread-safe by design: the registry actor calls it from one event loop, so each
    method runs to completion without interleaving, which makes ``start_run`` atomic.
    """

    def __init__(self, max_jobs: int = 10_000) -> None:
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, JobRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def get(self, job_id: str) -> JobRecord:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFoundError(f"no job with id {job_id}", job_id=job_id) from None

    def add(self, job_id: str, upload: UploadInfo) -> JobRecord:
        if job_id in self._jobs:
            raise JobConflictError(f"job {job_id} already exists", job_id=job_id)
        record = JobRecord(job_id=job_id, upload=upload)
        self._jobs[job_id] = record
        self._evict()
        return record

    def start_run(self, job_id: str, request: RunRequest) -> JobRecord:
        """Claim a new run of ``job_id``: 404 if unknown, 409 while a run is active."""
        record = self.get(job_id)
        if record.status.active:
            raise JobConflictError(
                f"job {job_id} is already {record.status}; wait for it to end",
                job_id=job_id,
                status=str(record.status),
            )
        record.transition(JobStatus.QUEUED)
        record.run += 1
        record.request = request
        record.stage = None
        record.progress = 0.0
        record.eta_seconds = None
        record.error = None
        record.result = None
        record.cancel_requested = False
        record.started_at = None
        record.finished_at = None
        record.stage_durations = {}
        record.stage_started_at = None
        record.retries = 0
        return record

    def retry_run(self, job_id: str, run: int, count: bool = True) -> JobRecord | None:
        """Re-queue the active run ``run`` as run ``run + 1`` with the same request.

        Reports of the old run are stale from then on (its worker, if alive, is told to
        stop). ``count`` adds one to ``retries``. None if ``run`` is no longer active.
        """
        record = self.current(job_id, run)
        if record is None:
            return None
        if record.status is JobStatus.RUNNING:
            record.transition(JobStatus.QUEUED)
        record.run += 1
        record.retries += int(count)
        record.stage = None
        record.progress = 0.0
        record.eta_seconds = None
        record.started_at = None
        record.stage_durations = {}
        record.stage_started_at = None
        record.updated_at = time.time()
        return record

    def restore(self, record: JobRecord) -> None:
        """Put back a record read from the journal (a restarted registry)."""
        self._jobs[record.job_id] = record
        self._evict()

    def remove(self, job_id: str) -> None:
        """Forget a job (retention); a no-op for an unknown id."""
        self._jobs.pop(job_id, None)

    def records(self) -> list[JobRecord]:
        """Every record in memory, oldest first."""
        return list(self._jobs.values())

    def current(self, job_id: str, run: int) -> JobRecord | None:
        """The record if ``run`` is still its active run, else None (a stale report)."""
        record = self._jobs.get(job_id)
        if record is None or record.run != run or not record.status.active:
            return None
        return record

    def report_progress(self, job_id: str, run: int, stage: Stage, fraction: float) -> bool:
        """Record a worker's progress; return True when the run should stop (cancelled/stale)."""
        record = self.current(job_id, run)
        if record is None:
            return True
        if record.status is JobStatus.QUEUED:
            record.transition(JobStatus.RUNNING)
        now = time.time()
        if record.enter_stage(stage, now) or str(stage) == record.stage:
            record.progress = max(record.progress, overall_progress(stage, fraction))
        record.updated_at = now
        return record.cancel_requested

    def complete(self, job_id: str, run: int, result: RunResult) -> JobRecord | None:
        record = self.current(job_id, run)
        if record is None:
            return None
        record.end_stage(time.time())
        record.transition(JobStatus.COMPLETED)
        record.result = result
        record.stage = str(Stage.EXPORT)
        record.progress = 100.0
        record.eta_seconds = 0.0
        return record

    def fail(self, job_id: str, run: int, error: dict[str, Any]) -> JobRecord | None:
        """End the run as failed, or as cancelled when ``error`` is the cancel error."""
        record = self.current(job_id, run)
        if record is None:
            return None
        cancelled = error.get("code") == "cancelled"
        record.end_stage(time.time())
        record.transition(JobStatus.CANCELLED if cancelled else JobStatus.FAILED)
        record.error = error
        record.eta_seconds = None
        return record

    def request_cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued run at once, or flag a running one for its workers to stop.

        404 if unknown, 409 unless a run is active (a finished run cannot be cancelled).
        """
        record = self.get(job_id)
        if not record.status.active:
            raise JobConflictError(
                f"job {job_id} is {record.status}; only a queued or running job can be cancelled",
                job_id=job_id,
                status=str(record.status),
            )
        record.cancel_requested = True
        record.updated_at = time.time()
        if record.status is JobStatus.QUEUED:
            record.transition(JobStatus.CANCELLED)
            record.error = JobCancelledError("the job was cancelled before it started").to_dict()
            record.eta_seconds = None
        return record

    def page(self, offset: int, limit: int, status: JobStatus | None = None) -> JobPage:
        records = [r for r in reversed(self._jobs.values()) if status is None or r.status is status]
        chosen = records[offset : offset + limit]
        return JobPage(
            jobs=tuple(r.snapshot() for r in chosen),
            total=len(records),
            offset=offset,
            limit=limit,
        )

    def counts(self) -> dict[str, int]:
        counts = {str(s): 0 for s in JobStatus}
        for record in self._jobs.values():
            counts[str(record.status)] += 1
        return counts

    def _evict(self) -> None:
        """Forget the oldest jobs without an active run once over ``max_jobs``."""
        excess = len(self._jobs) - self.max_jobs
        if excess <= 0:
            return
        for job_id in [j for j, r in self._jobs.items() if not r.status.active][:excess]:
            del self._jobs[job_id]
