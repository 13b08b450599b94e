"""What the registry knows about jobs beyond their state: ETA, queue order, feed, logs, metrics.

The registry calls ``changed(record)`` after every change to a job; the monitor compares the
record with what it published last and, from the difference, publishes a snapshot on the
change feed, writes the job's log, counts metrics and learns stage durations. It never
writes a record. Like the registry, it runs on one event loop and needs no lock.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.stages import PLAN_BANDS, Stage
from serve_app.metrics import (
    ACTIVE_JOBS,
    CACHE_HITS,
    GENERATOR_COUNTERS,
    JOBS_CANCELLED,
    JOBS_COMPLETED,
    JOBS_FAILED,
    JOBS_SUBMITTED,
    QUEUE_DEPTH,
    STAGE_SECONDS,
    UPLOAD_BYTES,
    UPLOADS,
    MetricSpec,
    MetricsSink,
    MetricsSnapshot,
    ServiceMetrics,
)
from serve_app.pipeline.text_params import describe_prompt
from serve_app.registry.eta import ImageClock, StageClock
from serve_app.registry.feeds import ChangeFeed, JobLog, JobLogs
from serve_app.registry.jobs import JobRecord, JobSnapshot
from serve_app.registry.table import JobTable

#: The metrics' ``generator`` label of a run that makes a picture alone.
TEXT_TO_IMAGE_LABEL = "text_to_image"
#: Steps assumed for the ETA of a text run whose request does not say (never, once
#: submitted through the API, which fills in the deployment's default).
FALLBACK_STEPS = 30

_OUTCOMES: dict[JobStatus, MetricSpec] = {
    JobStatus.COMPLETED: JOBS_COMPLETED,
    JobStatus.FAILED: JOBS_FAILED,
    JobStatus.CANCELLED: JOBS_CANCELLED,
}


@dataclass(frozen=True)
class _Seen:
    """The last published view of a job: a new snapshot goes out when this changes."""

    run: int
    status: JobStatus
    stage: Stage | None
    progress: float
    cancel_requested: bool
    queue_position: int | None
    variants: int = 0
    version: int = 0

    @classmethod
    def of(cls, record: JobRecord, queue_position: int | None) -> _Seen:
        return cls(
            run=record.run,
            status=record.status,
            stage=record.stage,
            progress=round(record.progress, 1),
            cancel_requested=record.cancel_requested,
            queue_position=queue_position,
            variants=len(record.variants),
        )


@dataclass(frozen=True)
class _Place:
    """A queued run's place: 1 for the next to start, and the expected seconds ahead of it."""

    position: int
    ahead_s: float


class JobMonitor:
    """The change feed, logs, ETA and service metrics of the table's jobs."""

    def __init__(
        self,
        table: JobTable,
        clock: StageClock | None = None,
        sink: MetricsSink | None = None,
        feed: ChangeFeed | None = None,
        images: ImageClock | None = None,
    ) -> None:
        self._table = table
        self.clock = clock or StageClock()
        self.images = images or ImageClock()
        self.metrics = ServiceMetrics(sink)
        self.feed = feed or ChangeFeed()
        self.logs = JobLogs()
        self._seen: dict[str, _Seen] = {}
        #: Queued runs in submission order → expected seconds of the run.
        self._queue: dict[str, float] = {}
        #: Jobs whose run is running: the lanes that the queued runs wait for.
        self._running: set[str] = set()

    # -- reading ---------------------------------------------------------------------

    def snapshot(self, record: JobRecord, now: float | None = None) -> JobSnapshot:
        """``record`` as clients see it: queue position, ETA and feed version filled in."""
        return self._snapshot(record, self._place(record.job_id), now)

    def eta(self, record: JobRecord, now: float | None = None) -> float | None:
        """Seconds until the run ends, from the learnt stage durations; None when ended."""
        return self._eta(record, self._place(record.job_id), now)

    def read_log(self, job_id: str) -> JobLog:
        return self.logs.read(job_id)

    def declare_labels(self, generators: Iterable[str], text_to_image: bool) -> None:
        """Show the generator-labelled counters as zero for every enabled generator (and
        text-to-image's label when a model is configured) before their first event."""
        labels = [*generators, *([TEXT_TO_IMAGE_LABEL] if text_to_image else [])]
        for spec in GENERATOR_COUNTERS:
            for label in labels:
                self.metrics.declare(spec, label)

    def metrics_snapshot(self) -> MetricsSnapshot:
        self._update_gauges()
        return self.metrics.snapshot()

    # -- recording -------------------------------------------------------------------

    def uploaded(self, record: JobRecord) -> None:
        upload = record.upload
        assert upload is not None
        self.metrics.inc(UPLOADS)
        self.metrics.inc(UPLOAD_BYTES, value=float(upload.size_bytes))
        self.log(
            record, "uploaded", f"image stored: {upload.size_bytes} bytes, {upload.media_type}"
        )
        self.changed(record)

    def image_made(self, record: JobRecord) -> None:
        """The job's text stage made its picture (or found it in the cache)."""
        image = record.image
        if image is None:
            return
        params = image.params
        source = "from the cache" if image.cached else f"in {image.seconds:.3f} s"
        self.log(
            record,
            "image_made",
            f"picture made {source}: {params.width}x{params.height} px, seed {params.seed}, "
            f"{params.steps} steps, guidance {params.guidance_scale}, "
            f"model {image.model_version}",
        )
        self.changed(record)

    def log(self, record: JobRecord, event: str, message: str) -> None:
        self.logs.log(record.job_id, record.run, event, message, record.stage)

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
        self._publish(record, self._place(job_id), before)

    def forget(self, job_ids: Iterable[str]) -> None:
        """The table forgot these jobs (eviction, retention): drop them, tell the readers."""
        for job_id in job_ids:
            self._seen.pop(job_id, None)
            self._queue.pop(job_id, None)
            self._running.discard(job_id)
            self.logs.forget([job_id])
            self.feed.publish(job_id, None)

    async def wait_until_ended(self, record: JobRecord, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for ``record``'s current run to end; False if it did not."""
        run = record.run
        deadline = time.monotonic() + timeout_s
        while record.run == run and record.status.active:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await self.feed.wait(self.feed.seq, left)
        return True

    # -- internals ---------------------------------------------------------------------

    def _publish(self, record: JobRecord, place: _Place | None, before: _Seen | None) -> None:
        seen = _Seen.of(record, place.position if place else None)
        if before is not None and replace(seen, version=before.version) == before:
            return
        published = self.feed.publish(record.job_id, self._snapshot(record, place))
        assert published is not None
        self._seen[record.job_id] = replace(seen, version=published.version)

    def _snapshot(
        self, record: JobRecord, place: _Place | None, now: float | None = None
    ) -> JobSnapshot:
        seen = self._seen.get(record.job_id)
        return replace(
            record.snapshot(),
            queue_position=place.position if place else None,
            eta_seconds=self._eta(record, place, now),
            version=seen.version if seen else 0,
        )

    def _place(self, job_id: str) -> _Place | None:
        ahead = 0.0
        for position, (queued, seconds) in enumerate(self._queue.items(), start=1):
            if queued == job_id:
                return _Place(position, ahead)
            ahead += seconds
        return None

    def _eta(self, record: JobRecord, place: _Place | None, now: float | None) -> float | None:
        if record.status is JobStatus.COMPLETED:
            return 0.0
        if not record.status.active or not record.dispatchable:
            return None
        if record.status is JobStatus.QUEUED:
            return round(self._wait_s(place, now) + self._run_seconds(record), 2)
        return self._running_eta(record, now)

    def _wait_s(self, place: _Place | None, now: float | None) -> float:
        """Expected seconds before a queued run starts: the work left in the runs that are
        running plus the expected seconds of the runs queued ahead of it, shared among the
        lanes. While runs wait every lane is busy, so the lanes are the running runs."""
        left, lanes = 0.0, 0
        for job_id in self._running:
            running = self._table.find(job_id)
            if running is not None and running.status is JobStatus.RUNNING and running.dispatchable:
                left += self._running_eta(running, now)
                lanes += 1
        ahead = place.ahead_s if place else 0.0
        return (left + ahead) / max(1, lanes)

    def _running_eta(self, record: JobRecord, now: float | None) -> float:
        """Seconds left in a running record's run."""
        stages, stage = record.plan.stages, record.stage
        if stage is None or stage not in stages:
            return round(self._run_seconds(record), 2)
        now = time.time() if now is None else now
        started = record.stage_started_at
        elapsed = now - started if started is not None else 0.0
        fraction = _stage_fraction(record)
        expected = self._expected(record, stage)
        if stage is Stage.TEXT_TO_IMAGE:
            left = self.images.remaining(expected, fraction, elapsed)
        else:
            left = max(expected * (1.0 - fraction), expected - elapsed, 0.0)
        later = sum(self._expected(record, s) for s in stages[stages.index(stage) + 1 :])
        return round(left + later, 2)

    def _expected(self, record: JobRecord, stage: Stage) -> float:
        """Expected seconds of ``stage`` of the record's current run."""
        if stage is Stage.TEXT_TO_IMAGE:
            return self.images.expected(_steps(record))
        request = record.request
        assert request is not None
        return self.clock.expected(request.generator, request.params.quality, stage)

    def _run_seconds(self, record: JobRecord) -> float:
        """Expected seconds of the record's whole current run."""
        return sum(self._expected(record, stage) for stage in record.plan.stages)

    def _update_gauges(self) -> None:
        counts = self._table.counts()
        self.metrics.set(QUEUE_DEPTH, float(counts[JobStatus.QUEUED]))
        self.metrics.set(ACTIVE_JOBS, float(counts[JobStatus.RUNNING]))

    def _on_status(self, record: JobRecord, before: _Seen | None, new_run: bool) -> None:
        job_id, status = record.job_id, record.status
        label = _label(record)
        was_active = before is not None and before.status.active and not new_run
        # A new run while the last one was still active is a retry, not a new submission.
        retry = before is not None and before.status.active and new_run
        if status is JobStatus.QUEUED and new_run and record.dispatchable:
            if not retry:
                self.metrics.inc(JOBS_SUBMITTED, label)
            self._queue[job_id] = self._run_seconds(record)
            self.log(record, "queued", f"run {record.run} queued: {_describe_run(record)}")
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
            self._on_end(record, label)
        self._update_gauges()

    def _on_stage(self, record: JobRecord, previous: Stage | None) -> None:
        if previous is not None and previous in record.stage_durations:
            seconds = record.stage_durations[previous]
            self.logs.log(
                record.job_id,
                record.run,
                "stage_finished",
                f"{previous} took {seconds:.3f} s",
                previous,
            )
        if record.stage is not None and record.status is JobStatus.RUNNING:
            self.log(record, "stage_started", f"{record.stage} started")

    def _on_end(self, record: JobRecord, label: str) -> None:
        status = record.status
        self.metrics.inc(_OUTCOMES[status], label)
        request, result, image = record.request, record.result, record.image
        if status is JobStatus.COMPLETED:
            made_image = record.plan.makes_image and image is not None
            from_cache = (result.cached if result is not None else True) and (
                not made_image or (image is not None and image.cached)
            )
            if from_cache:
                self.metrics.inc(CACHE_HITS, label)
                self.log(record, "completed", "completed from the cache")
                return
            last = record.stage
            if last is not None and last in record.stage_durations:
                self.logs.log(
                    record.job_id,
                    record.run,
                    "stage_finished",
                    f"{last} took {record.stage_durations[last]:.3f} s",
                    last,
                )
            self._learn(record, request is not None and (result is None or not result.cached))
            total = sum(record.stage_durations.values())
            self.log(record, "completed", f"completed in {total:.3f} s of stage time")
        elif status is JobStatus.CANCELLED:
            where = f" during {record.stage}" if record.stage else " before it started"
            self.log(record, "cancelled", f"cancelled{where}")
        else:
            error = record.error or {}
            self.log(record, "failed", f"{error.get('code', 'error')}: {error.get('message', '')}")

    def _learn(self, record: JobRecord, model_made: bool) -> None:
        """Fold a completed run's stage durations into the clocks and the histogram."""
        durations = dict(record.stage_durations)
        label = _label(record)
        quality = str(record.request.params.quality) if record.request else ""
        text_s = durations.pop(Stage.TEXT_TO_IMAGE, None)
        image = record.image
        if text_s is not None and image is not None and not image.cached:
            self.images.observe(text_s, _steps(record))
            self.metrics.observe(STAGE_SECONDS, text_s, Stage.TEXT_TO_IMAGE, label, quality)
        request = record.request
        if model_made and request is not None:
            self.clock.observe(request.generator, request.params.quality, durations)
            for stage, seconds in durations.items():
                self.metrics.observe(STAGE_SECONDS, seconds, stage, label, quality)

    def _dequeue(self, job_id: str) -> None:
        """``job_id`` left the queue: everyone behind it moved up one place."""
        if job_id not in self._queue:
            return
        behind = list(self._queue)
        behind = behind[behind.index(job_id) + 1 :]
        del self._queue[job_id]
        if not behind:
            return
        places = self._places()
        for queued in behind:
            record = self._table.find(queued)
            if record is not None:
                self._publish(record, places.get(queued), self._seen.get(queued))

    def _places(self) -> dict[str, _Place]:
        """Every queued run's place, in one pass."""
        places: dict[str, _Place] = {}
        ahead = 0.0
        for position, (job_id, seconds) in enumerate(self._queue.items(), start=1):
            places[job_id] = _Place(position, ahead)
            ahead += seconds
        return places


def _stage_fraction(record: JobRecord) -> float:
    """How far into its current stage a job with overall ``progress`` (0..100) is."""
    bands = PLAN_BANDS[record.plan]
    if record.stage is None or record.stage not in bands:
        return 0.0
    lo, hi = bands[record.stage]
    return min(1.0, max(0.0, (record.progress - lo) / (hi - lo)))


def _steps(record: JobRecord) -> int:
    """The denoising steps of a text job's picture (as made, else as asked)."""
    if record.image is not None and record.image.params.steps:
        return record.image.params.steps
    if record.text is not None and record.text.steps:
        return record.text.steps
    return FALLBACK_STEPS


def _label(record: JobRecord) -> str:
    """The metrics' ``generator`` label of the record's run."""
    if record.request is not None:
        return record.request.generator
    return TEXT_TO_IMAGE_LABEL if record.plan.makes_image else "unknown"


def _describe_run(record: JobRecord) -> str:
    """What a run is asked for, for the job's log; a prompt only as a hash and a length."""
    parts = []
    text = record.text
    if record.plan.makes_image and text is not None:
        parts.append(
            f"text to image, prompt {describe_prompt(text.prompt)}, negative prompt "
            f"{describe_prompt(text.negative_prompt)}, seed {text.seed}, {text.steps} steps"
        )
    request = record.request
    if record.plan.makes_model and request is not None:
        parts.append(
            f"{request.format}, quality {request.params.quality}, generator {request.generator}"
        )
    return "; then ".join(parts)
