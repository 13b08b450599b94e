"""JobTable: the registry's jobs in memory; every change of a job's state is made here."""

from __future__ import annotations

import itertools
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping

from serve_app.contracts.jobs import JobStatus, can_transition
from serve_app.contracts.runs import RunRequest, RunResult, StoredImage, UploadInfo
from serve_app.contracts.stages import PLAN_BANDS, RunPlan, Stage, overall_progress
from serve_app.contracts.text import TextToImageParams
from serve_app.contracts.variants import VariantInfo
from serve_app.errors import JobCancelledError, JobConflictError, JobNotFoundError, OrfeasError
from serve_app.registry.jobs import EVERYONE, JobPage, JobRecord, Viewer

_STAGE_ORDER = {stage: i for i, stage in enumerate(Stage)}
#: The most progress a run shows before it has completed: 100 means done.
RUNNING_PROGRESS_CAP = 99.0


class JobTable:
    """Jobs by id, oldest first.

    Not thread-safe by design: the registry actor calls it from one event loop, so each
    method runs to completion without interleaving, which makes ``start_run`` atomic.
    Statuses change only through ``_move``, which keeps the count of jobs per status.
    """

    def __init__(self, max_jobs: int = 10_000) -> None:
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self._counts: Counter[JobStatus] = Counter()

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __iter__(self) -> Iterator[JobRecord]:
        """Every record, oldest first (do not add or remove jobs while iterating)."""
        return iter(self._jobs.values())

    def slice(self, offset: int, limit: int) -> list[JobRecord]:
        """Records ``offset`` to ``offset + limit``, oldest first."""
        return list(itertools.islice(self._jobs.values(), offset, offset + limit))

    def get(self, job_id: str) -> JobRecord:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFoundError(f"no job with id {job_id}", job_id=job_id) from None

    def find(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    def current(self, job_id: str, run: int) -> JobRecord | None:
        """The record if ``run`` is still its active run, else None (a stale report)."""
        record = self._jobs.get(job_id)
        if record is None or record.run != run or not record.status.active:
            return None
        return record

    def counts(self) -> Mapping[JobStatus, int]:
        """Jobs in memory per status."""
        return {status: self._counts[status] for status in JobStatus}

    def page(
        self, offset: int, limit: int, status: JobStatus | None = None, viewer: Viewer = EVERYONE
    ) -> JobPage:
        """The jobs ``viewer`` may see, newest first by creation (as ``JobView.page``)."""
        matching = sorted(
            (
                r
                for r in self._jobs.values()
                if (status is None or r.status is status) and viewer.may_see(r.owner)
            ),
            key=lambda r: (r.created_at, r.job_id),
            reverse=True,
        )
        chosen = tuple(r.snapshot() for r in matching[offset : offset + limit])
        return JobPage(jobs=chosen, total=len(matching), offset=offset, limit=limit)

    # -- jobs come and go ------------------------------------------------------------

    def add(self, job_id: str, upload: UploadInfo | None, owner: str | None = None) -> JobRecord:
        """A new job; over ``max_jobs`` the caller calls ``evict``."""
        if job_id in self._jobs:
            raise JobConflictError(f"job {job_id} already exists", job_id=job_id)
        record = JobRecord(job_id=job_id, upload=upload, owner=owner)
        self._put(record)
        return record

    def add_text(self, job_id: str, text: TextToImageParams, owner: str | None = None) -> JobRecord:
        """A new text job: no picture yet, its prompt to make one from (``start_run`` next)."""
        record = self.add(job_id, None, owner)
        record.text = text
        return record

    def restore(self, record: JobRecord) -> None:
        """Put back a record read from the journal (a restarted registry)."""
        self.remove(record.job_id)
        self._put(record)

    def remove(self, job_id: str) -> None:
        """Forget a job (retention, eviction); a no-op for an unknown id."""
        record = self._jobs.pop(job_id, None)
        if record is not None:
            self._counts[record.status] -= 1

    def evict(self) -> list[str]:
        """Forget the oldest jobs without an active run while over ``max_jobs``; their ids."""
        excess = len(self._jobs) - self.max_jobs
        if excess <= 0:
            return []
        gone = [j for j, r in self._jobs.items() if not r.status.active][:excess]
        for job_id in gone:
            self.remove(job_id)
        return gone

    # -- runs --------------------------------------------------------------------------

    def start_run(
        self,
        job_id: str,
        request: RunRequest | None,
        client: str | None = None,
        plan: RunPlan = RunPlan.MODEL,
    ) -> JobRecord:
        """Claim a new run of ``job_id``: 404 if unknown, 409 while a run is active, and 409
        for a model run of a text job whose picture was never made.

        ``client`` (an API key id or an address) is who submitted it, for fair shares;
        ``plan`` which stages it goes through (``request`` is None for a picture alone).
        """
        record = self.get(job_id)
        if record.status.active:
            raise JobConflictError(
                f"job {job_id} is already {record.status}; wait for it to end",
                job_id=job_id,
                status=str(record.status),
            )
        if plan.makes_model and request is None:
            raise ValueError("a run that makes a model needs its request")
        if plan.makes_image and record.text is None:
            raise JobConflictError(f"job {job_id} has no prompt to make a picture from")
        if not plan.makes_image and record.upload is None:
            raise JobConflictError(
                f"job {job_id} has no picture to model: its text-to-image run ended "
                f"{record.status} before the picture was made; send the prompt again",
                job_id=job_id,
                status=str(record.status),
            )
        self._move(record, JobStatus.QUEUED)
        record.run += 1
        record.plan = plan
        record.request = request
        record.client = client
        record.retries = 0
        record.error = None
        record.result = None
        record.cancel_requested = False
        record.finished_at = None
        record.variants = {}  # versions of the last run's model, not of the next one's
        self._reset_progress(record)
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
            self._move(record, JobStatus.QUEUED)
        record.run += 1
        record.retries += int(count)
        record.updated_at = time.time()
        self._reset_progress(record)
        return record

    def report_progress(self, job_id: str, run: int, stage: Stage, fraction: float) -> bool:
        """Record a worker's progress; return True when the run should stop (cancelled/stale).

        Progress is the plan's overall figure for ``stage`` at ``fraction``: it never goes
        back within a run, and stays below 100 until the run completes.
        """
        record = self.current(job_id, run)
        if record is None:
            return True
        if stage not in PLAN_BANDS[record.plan]:  # not this run's stage: nothing to show
            return record.cancel_requested
        if record.status is JobStatus.QUEUED:
            self._move(record, JobStatus.RUNNING)
        now = time.time()
        if _enter_stage(record, stage, now) or stage == record.stage:
            progress = min(overall_progress(stage, fraction, record.plan), RUNNING_PROGRESS_CAP)
            record.progress = max(record.progress, progress)
        record.updated_at = now
        return record.cancel_requested

    def image_made(self, job_id: str, run: int, image: StoredImage) -> JobRecord | None:
        """The text stage of run ``run`` made the job's picture: it is the job's input from
        now on, even if the run was cancelled meanwhile. None if ``run`` is not the job's
        latest run (a retry makes the same picture again)."""
        record = self._jobs.get(job_id)
        if record is None or record.run != run:
            return None
        record.upload = image.upload
        record.image = image
        record.updated_at = time.time()
        return record

    def complete(self, job_id: str, run: int, result: RunResult | None) -> JobRecord | None:
        """End the run as completed: with its model, or (a picture alone) ``result`` None."""
        record = self.current(job_id, run)
        if record is None:
            return None
        if result is None and record.plan.makes_model:
            raise ValueError("a run that makes a model completes with its result")
        _end_stage(record, time.time())
        self._move(record, JobStatus.COMPLETED)
        record.result = result
        record.stage = record.plan.stages[-1]
        record.progress = 100.0
        record.eta_seconds = 0.0
        return record

    def fail(self, job_id: str, run: int, error: OrfeasError) -> JobRecord | None:
        """End the run as failed, or as cancelled when ``error`` is a cancel."""
        record = self.current(job_id, run)
        if record is None:
            return None
        stage = record.stage
        _end_stage(record, time.time())
        cancelled = isinstance(error, JobCancelledError)
        self._move(record, JobStatus.CANCELLED if cancelled else JobStatus.FAILED)
        record.error = error.to_dict()
        if stage is not None:  # where it ended, unless the stage that raised said so
            record.error.setdefault("stage", str(stage))
        record.eta_seconds = None
        return record

    def add_variant(self, job_id: str, run: int, variant: VariantInfo) -> JobRecord | None:
        """Record a variant of run ``run``'s model; None unless that run is the job's last
        and completed (a new run started meanwhile, or the job is gone)."""
        record = self._jobs.get(job_id)
        if record is None or record.run != run or record.status is not JobStatus.COMPLETED:
            return None
        record.variants[variant.variant_id] = variant
        record.updated_at = time.time()
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
            self._move(record, JobStatus.CANCELLED)
            record.error = JobCancelledError("the job was cancelled before it started").to_dict()
            record.eta_seconds = None
        return record

    # -- internals ---------------------------------------------------------------------

    def _put(self, record: JobRecord) -> None:
        self._jobs[record.job_id] = record
        self._counts[record.status] += 1

    def _move(self, record: JobRecord, target: JobStatus) -> None:
        """The one place a status changes: checked against the transition table."""
        if not can_transition(record.status, target):
            raise JobConflictError(
                f"job {record.job_id} cannot go from {record.status} to {target}",
                status=str(record.status),
            )
        now = time.time()
        if record.job_id in self._jobs:
            self._counts[record.status] -= 1
            self._counts[target] += 1
        record.status = target
        record.updated_at = now
        if target is JobStatus.RUNNING:
            record.started_at = now
        elif target.terminal:
            record.finished_at = now

    @staticmethod
    def _reset_progress(record: JobRecord) -> None:
        record.stage = None
        record.progress = 0.0
        record.eta_seconds = None
        record.started_at = None
        record.stage_durations = {}
        record.stage_started_at = None


def _enter_stage(record: JobRecord, stage: Stage, now: float) -> bool:
    """Move to ``stage`` if it comes after the current one; True when it did."""
    if record.stage is not None and _STAGE_ORDER[stage] <= _STAGE_ORDER[record.stage]:
        return False
    _end_stage(record, now)
    record.stage = stage
    record.stage_started_at = now
    return True


def _end_stage(record: JobRecord, now: float) -> None:
    """Record how long the current stage took (once)."""
    if record.stage is not None and record.stage_started_at is not None:
        record.stage_durations[record.stage] = round(max(0.0, now - record.stage_started_at), 4)
    record.stage_started_at = None
