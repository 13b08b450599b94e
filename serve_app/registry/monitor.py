"""What the registry knows about jobs beyond their state: ETA, queue order, feeds, logs, metrics.

The registry calls ``changed(record)`` after every change to a job; the monitor compares the
record with what it saw last and, from the difference, publishes a snapshot to the job's
watchers, writes the job's log, counts metrics and learns stage durations. It never writes
a record. Like the registry, it runs on one event loop and needs no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from serve_app.metrics import (
    ACTIVE_JOBS,
    CACHE_HITS,
    JOBS_CANCELLED,
    JOBS_COMPLETED,
    JOBS_FAILED,
    JOBS_SUBMITTED,
    QUEUE_DEPTH,
    STAGE_SECONDS,
    UPLOAD_BYTES,
    UPLOADS,
    MetricsSink,
    MetricsSnapshot,
    ServiceMetrics,
)
from serve_app.pipeline.types import Stage
from serve_app.registry.eta import StageClock
from serve_app.registry.feeds import JobFeeds, JobLog, WatchReply
from serve_app.registry.jobs import JobRecord, JobSnapshot, JobStatus

_OUTCOMES = {
    JobStatus.COMPLETED: JOBS_COMPLETED,
    JobStatus.FAILED: JOBS_FAILED,
    JobStatus.CANCELLED: JOBS_CANCELLED,
}


@dataclass(frozen=True)
class _Seen:
    """The last published view of a job: a new snapshot goes out when this changes."""

    run: int
    status: JobStatus
    stage: str | None
    progress: float
    cancel_requested: bool
    queue_position: int | None

    @classmethod
    def of(cls, record: JobRecord, queue_position: int | None) -> _Seen:
        return cls(
            run=record.run,
            status=record.status,
            stage=record.stage,
            progress=round(record.progress, 1),
            cancel_requested=record.cancel_requested,
            queue_position=queue_position,
        )


class JobMonitor:
    """Feeds, logs, ETA and service metrics of the registry's jobs."""

    def __init__(
        self,
        lookup: Callable[[str], JobRecord | None],
        clock: StageClock | None = None,
        sink: MetricsSink | None = None,
        feeds: JobFeeds | None = None,
    ) -> None:
        self._lookup = lookup
        self.clock = clock or StageClock()
        self.metrics = ServiceMetrics(sink)
        self.feeds = feeds or JobFeeds()
        self._seen: dict[str, _Seen] = {}
        #: Queued jobs in submission order → expected seconds of their run.
        self._queue: dict[str, float] = {}
        self._running: set[str] = set()

    # -- reading ---------------------------------------------------------------------

    def snapshot(self, record: JobRecord, now: float | None = None) -> JobSnapshot:
        """``record`` as clients see it, with its queue position and ETA filled in."""
        snap = record.snapshot()
        position = self.queue_position(record.job_id) if record.status is JobStatus.QUEUED else None
        return replace(snap, queue_position=position, eta_seconds=self.eta(record, now))

    def queue_position(self, job_id: str) -> int | None:
        """1 for the next queued run to start, None when ``job_id`` is not queued."""
        for position, queued in enumerate(self._queue, start=1):
            if queued == job_id:
                return position
        return None

    def eta(self, record: JobRecord, now: float | None = None) -> float | None:
        """Seconds until the run ends, from the learnt stage durations; None when ended."""
        if record.status is JobStatus.COMPLETED:
            return 0.0
        if not record.status.active or record.request is None:
            return None
        request = record.request
        generator, quality = request.generator, request.params.quality
        if record.status is JobStatus.QUEUED:
            ahead = 0.0
            for job_id, seconds in self._queue.items():
                if job_id == record.job_id:
                    break
                ahead += seconds
            return round(ahead + self.clock.total(generator, quality), 2)
        now = time.time() if now is None else now
        stage = Stage(record.stage) if record.stage else None
        started = record.stage_started_at
        elapsed = now - started if started is not None else 0.0
        fraction = _stage_fraction(stage, record.progress)
        return round(self.clock.remaining(generator, quality, stage, fraction, elapsed), 2)

    def read_log(self, job_id: str) -> JobLog:
        return self.feeds.get(job_id).read_log(job_id)

    def metrics_snapshot(self) -> MetricsSnapshot:
        self._update_gauges()
        return self.metrics.snapshot()

    def _update_gauges(self) -> None:
        self.metrics.set(QUEUE_DEPTH, float(len(self._queue)))
        self.metrics.set(ACTIVE_JOBS, float(len(self._running)))

    async def watch(self, record: JobRecord, since: int | None, timeout_s: float) -> WatchReply:
        """The job's current state (``since`` None), or the changes after ``since``.

        Waits up to ``timeout_s`` for a change; an empty reply means none came. A watcher
        that fell further behind than the history (or that knew an older registry) gets
        the current state.
        """
        feed = self.feeds.get(record.job_id)
        if since is None or since > feed.version:
            return WatchReply(feed.version, (self.snapshot(record),))
        await feed.wait(since, timeout_s)
        missed = feed.since(since)
        if feed.version > since and not missed:
            missed = (self.snapshot(record),)
        return WatchReply(feed.version, missed)

    # -- recording -------------------------------------------------------------------

    def uploaded(self, record: JobRecord) -> None:
        upload = record.upload
        self.metrics.inc(UPLOADS)
        self.metrics.inc(UPLOAD_BYTES, value=float(upload.size_bytes))
        self.log(
            record, "uploaded", f"image stored: {upload.size_bytes} bytes, {upload.media_type}"
        )
        self.changed(record)

    def log(self, record: JobRecord, event: str, message: str) -> None:
        self.feeds.log(record.job_id, record.run, event, message, record.stage)

    def changed(self, record: JobRecord) -> None:
        """Account for whatever changed in ``record`` since the last call."""
        job_id = record.job_id
        before = self._seen.get(job_id)
        new_run = before is None or before.run != record.run
        newly_cancelled = (
            before is not None
            and not new_run
            and record.cancel_requested
            and not before.cancel_requested
        )
        if newly_cancelled:
            self.log(record, "cancel_requested", "cancel requested")
        if new_run or before is None or before.status is not record.status:
            self._on_status(record, before, new_run)
        elif before.stage != record.stage:
            self._on_stage(record, before.stage)
        position = self.queue_position(job_id) if record.status is JobStatus.QUEUED else None
        seen = _Seen.of(record, position)
        if seen != before:
            self._seen[job_id] = seen
            self.feeds.get(job_id).publish(self.snapshot(record))

    async def wait_until_ended(self, record: JobRecord, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for ``record``'s current run to end; False if it did not."""
        feed = self.feeds.get(record.job_id)
        run = record.run
        deadline = time.monotonic() + timeout_s
        while record.run == run and record.status.active:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await feed.wait(feed.version, left)
        return True

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Drop what is kept about jobs for which ``keep`` is false (evicted by the registry)."""
        for job_id in [j for j in self._seen if not keep(j)]:
            del self._seen[job_id]
        self.feeds.forget(keep)

    # -- transitions -----------------------------------------------------------------

    def _on_status(self, record: JobRecord, before: _Seen | None, new_run: bool) -> None:
        job_id, status = record.job_id, record.status
        request = record.request
        generator = request.generator if request else "unknown"
        was_active = before is not None and before.status.active and not new_run
        # A new run while the last one was still active is a retry, not a new submission.
        retry = before is not None and before.status.active and new_run
        if status is JobStatus.QUEUED and new_run and request is not None:
            if not retry:
                self.metrics.inc(JOBS_SUBMITTED, generator)
            quality = request.params.quality
            self._queue[job_id] = self.clock.total(generator, quality)
            self.log(
                record,
                "queued",
                f"run {record.run} queued: {request.format}, quality {quality}, "
                f"generator {generator}",
            )
        if status is not JobStatus.QUEUED:
            self._dequeue(job_id)
        if status is JobStatus.RUNNING:
            self._running.add(job_id)
            self.log(record, "started", "a worker started the run")
        else:
            self._running.discard(job_id)
        if before is not None and before.stage != record.stage and not new_run:
            self._on_stage(record, before.stage)
        if status.terminal and was_active:
            self._on_end(record, generator)
        self._update_gauges()

    def _on_stage(self, record: JobRecord, previous: str | None) -> None:
        if previous is not None and previous in record.stage_durations:
            seconds = record.stage_durations[previous]
            self.feeds.log(
                record.job_id,
                record.run,
                "stage_finished",
                f"{previous} took {seconds:.3f} s",
                previous,
            )
        if record.stage is not None and record.status is JobStatus.RUNNING:
            self.log(record, "stage_started", f"{record.stage} started")

    def _on_end(self, record: JobRecord, generator: str) -> None:
        status = record.status
        self.metrics.inc(_OUTCOMES[status], generator)
        request, result = record.request, record.result
        if status is JobStatus.COMPLETED and result is not None:
            if result.cached:
                self.metrics.inc(CACHE_HITS, generator)
                self.log(record, "completed", "completed from the cache")
                return
            last = record.stage
            if last is not None and last in record.stage_durations:
                self.feeds.log(
                    record.job_id,
                    record.run,
                    "stage_finished",
                    f"{last} took {record.stage_durations[last]:.3f} s",
                    last,
                )
            if request is not None:
                quality = request.params.quality
                durations = record.stage_durations
                self.clock.observe(generator, quality, durations)
                for stage, seconds in durations.items():
                    self.metrics.observe(STAGE_SECONDS, seconds, stage, generator, str(quality))
            total = sum(record.stage_durations.values())
            self.log(record, "completed", f"completed in {total:.3f} s of stage time")
        elif status is JobStatus.CANCELLED:
            where = f" during {record.stage}" if record.stage else " before it started"
            self.log(record, "cancelled", f"cancelled{where}")
        else:
            error = record.error or {}
            self.log(record, "failed", f"{error.get('code', 'error')}: {error.get('message', '')}")

    def _dequeue(self, job_id: str) -> None:
        if self._queue.pop(job_id, None) is None:
            return
        # Everyone behind moved up one place: tell the jobs that are being watched.
        for queued in list(self._queue):
            feed = self.feeds.peek(queued)
            record = self._lookup(queued) if feed is not None and feed.watchers > 0 else None
            if record is not None:
                self.changed(record)


def _stage_fraction(stage: Stage | None, progress: float) -> float:
    """How far into ``stage`` a job with overall ``progress`` (0..100) is."""
    from serve_app.pipeline.types import STAGE_BANDS

    if stage is None:
        return 0.0
    lo, hi = STAGE_BANDS[stage]
    return min(1.0, max(0.0, (progress - lo) / (hi - lo)))
