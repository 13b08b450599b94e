"""JobRegistry: one source of truth for jobs, composed of the registry's parts; and its actor.

``JobRegistry`` is a plain class over the parts (table, journal, monitor and change feed,
supervisor, workers, retention), so it can run in-process; ``RegistryActor`` is the same
as the named, detached async Ray actor that ``build_app`` creates. Runs are dispatched
from here, not from the HTTP request that asked for them, so a client disconnect or an
ingress restart cannot cancel or orphan a job.

Every method runs on the actor's single event loop and mutates the table without
awaiting in between, so "one active run per job" needs no lock. Expected refusals (404,
409, 429, 503) are returned as values rather than raised: cheaper than remote exceptions.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from serve_app.config import AppConfig
from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.runs import RunRequest, TextModel, UploadInfo
from serve_app.contracts.stages import RunPlan, Stage
from serve_app.contracts.text import TextToImageParams
from serve_app.contracts.variants import VariantOrder
from serve_app.errors import JobCancelledError, JobNotFoundError, OrfeasError
from serve_app.metrics import MetricsSink, MetricsSnapshot, RayMetrics
from serve_app.registry import retention
from serve_app.registry.callbacks import Callbacks
from serve_app.registry.commits import Change, Commits
from serve_app.registry.feeds import Changes, JobLog
from serve_app.registry.jobs import JobPage, JobSnapshot, Viewer
from serve_app.registry.journal import Ledger
from serve_app.registry.leases import Beat
from serve_app.registry.monitor import JobMonitor
from serve_app.registry.supervisor import Supervisor, SupervisorStats
from serve_app.registry.table import JobTable
from serve_app.registry.variants import MeshToolsBackend, Variants
from serve_app.registry.workers import Backends, Workers
from serve_app.storage import ArtifactStore
from serve_app.webhooks.outbox import Outbox
from serve_app.webhooks.records import Delivery, DeliveryStore, Subscription, TargetKind

logger = logging.getLogger(__name__)

#: Heartbeats a cancelled run's workers get to stop before the run is ended without them.
CANCEL_GRACE_BEATS = 3
#: Longest a reader of the change feed waits in the registry for a change.
MAX_WAIT_S = 30.0
#: The journal under the storage root, unless ``registry.journal_path`` names one.
JOURNAL_FILE = Path("registry") / "journal.sqlite3"

#: A registry answer: the job, or the refusal returned rather than raised.
Reply = JobSnapshot | OrfeasError

P = ParamSpec("P")
R = TypeVar("R")


def journal_path(config: AppConfig) -> Path:
    """The configured journal file, or the default one under the storage root."""
    return config.registry.journal_path or config.storage.root / JOURNAL_FILE


@dataclass(frozen=True)
class SyncPage:
    """A page of every job the registry holds in memory, oldest first, for a reader that
    (re)starts following the change feed at position ``seq`` of feed ``epoch``.
    """

    epoch: str
    seq: int
    jobs: tuple[JobSnapshot, ...]
    total: int


@dataclass(frozen=True)
class TextModelHealth:
    """The text-to-image model a TextToImage replica reported, or why it could not load it."""

    version: str | None
    error: str | None


@dataclass(frozen=True)
class RegistryHealth:
    """What ``ping`` answers: jobs by status, runs in hand, and the workers' models."""

    jobs: dict[str, int]
    runs: SupervisorStats
    variants_in_progress: int
    #: Generator name → the version its ShapeTexture replicas report.
    generators: dict[str, str]
    #: Generator name → why its ShapeTexture replicas could not load it.
    generator_errors: dict[str, str]
    text_to_image: TextModelHealth
    #: The journal's file, its writes so far and their mean cost.
    journal_path: str
    journal_writes: int
    journal_mean_write_ms: float


def served(
    method: Callable[Concatenate[JobRegistry, P], Awaitable[R]],
) -> Callable[Concatenate[JobRegistry, P], Awaitable[R]]:
    """Count each call of a registry method (``JobRegistry.served_calls`` reports them)."""

    @functools.wraps(method)
    async def counted(self: JobRegistry, *args: P.args, **kwargs: P.kwargs) -> R:
        self.calls[method.__name__] += 1
        return await method(self, *args, **kwargs)

    return counted


class JobRegistry:
    """Claims runs atomically and drives them to an end; publishes every change."""

    def __init__(self, config: AppConfig, sink: MetricsSink | None = None) -> None:
        self._config = config
        self._table = JobTable(config.registry.max_jobs)
        self._monitor = JobMonitor(self._table, sink=sink)
        self._declare_metric_labels(config)
        self._ledger = Ledger(journal_path(config))
        self._commits = Commits(self._ledger, self._monitor)
        self._workers = Workers(
            self._ledger,
            ArtifactStore(config.storage.root),
            config.pipeline.background_model,
            config.pipeline.texture_version,
        )
        self._supervisor = Supervisor(
            self._table, self._monitor, self._commits, self._workers, config.registry
        )
        self._variants = Variants(
            self._table, self._monitor, self._commits, self._ledger, config.mesh_tools
        )
        #: Calls served, by method (``served_calls``): what each kind of request costs.
        self.calls: Counter[str] = Counter()
        self._loops: list[asyncio.Task[None]] = []
        self._in_flight = self._load_journal()
        store = DeliveryStore(journal_path(config))
        self._callbacks = Callbacks(store, Outbox(store, config.webhooks), self._find_snapshot)

    def start(self) -> None:
        """Start the watchdog, retention and (after a restart) resume; on the event loop."""
        self._loops = [
            asyncio.create_task(self._supervisor.watchdog(), name="registry-watchdog"),
            asyncio.create_task(self._retention(), name="registry-retention"),
            asyncio.create_task(self._callbacks.outbox.run(), name="registry-webhooks"),
            asyncio.create_task(
                self._callbacks.follow(self._monitor.feed), name="registry-callbacks"
            ),
        ]
        if self._in_flight:
            resume = self._supervisor.resume(self._in_flight)
            self._loops.append(asyncio.create_task(resume, name="registry-resume"))

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._ledger.journal.close()
        self._callbacks.store.close()

    # -- configuration -------------------------------------------------------------------

    @served
    async def configure(self, config: AppConfig) -> None:
        """Adopt the config of the application that is (re)deployed now."""
        if config == self._config:
            return
        self._config = config
        self._workers.store = ArtifactStore(config.storage.root)
        self._workers.background_model = config.pipeline.background_model
        self._supervisor.policy = config.registry
        self._variants.policy = config.mesh_tools
        self._table.max_jobs = config.registry.max_jobs
        self._callbacks.outbox.config = config.webhooks
        self._declare_metric_labels(config)
        for record in self._ledger.move_to(journal_path(config)):
            if record.job_id not in self._table:
                self._table.restore(record)
        self._forget(self._table.evict())

    def _declare_metric_labels(self, config: AppConfig) -> None:
        text = config.text_to_image.model_path is not None
        self._monitor.declare_labels(config.pipeline.generators.enabled(), text_to_image=text)

    @served
    async def attach(self, backends: Backends) -> None:
        """The worker deployments runs go through (an ingress replica says, as it starts)."""
        self._workers.attach(backends)

    @served
    async def attach_mesh_tools(self, backend: MeshToolsBackend) -> None:
        """Where variants are made (an ingress replica says, as it starts)."""
        self._variants.attach(backend)

    @served
    async def report_generator(
        self, name: str, version: str | None, error: str | None = None
    ) -> None:
        """A ShapeTexture replica says which generator version it runs (for cache keys), or
        why it could not load the generator (``version`` None; shown by ``/api/health``)."""
        self._workers.report(name, version, error)

    @served
    async def report_text_model(self, model: TextModel | None, error: str | None = None) -> None:
        """A TextToImage replica says which model version it runs (image cache keys), or why
        it could not load its model (``model`` None; shown by ``/api/health``)."""
        self._workers.report_text_model(model, error)

    # -- jobs ------------------------------------------------------------------------------

    @served
    async def register_upload(
        self, job_id: str, upload: UploadInfo, owner: str | None = None
    ) -> Reply:
        try:
            record = self._table.add(job_id, upload, owner)
        except OrfeasError as exc:
            return exc
        self._commits.commit(record, Change.UPLOADED)
        self._forget(self._table.evict())
        return self._monitor.snapshot(record)

    @served
    async def get(self, job_id: str) -> Reply:
        await self._recover(job_id)
        try:
            return self._monitor.snapshot(self._table.get(job_id))
        except OrfeasError as exc:
            return exc

    @served
    async def submit(self, job_id: str, request: RunRequest, client: str | None = None) -> Reply:
        """Claim a new run (404 unknown, 409 active, 503 queue full, 429 client's share
        used) and start it in the background; ``client`` is an API key id or an address.
        """
        await self._recover(job_id)
        # From here to the dispatch nothing awaits: admission and claim are atomic.
        try:
            record = self._table.get(job_id)
            if not record.status.active and (refusal := self._supervisor.admit(client)):
                return refusal
            record = self._table.start_run(job_id, request, client)
        except OrfeasError as exc:
            return exc
        self._commits.commit(record)  # accepted means journaled
        self._supervisor.dispatch(record)
        return self._monitor.snapshot(record)

    @served
    async def submit_text(
        self,
        job_id: str,
        text: TextToImageParams,
        then: RunRequest | None = None,
        owner: str | None = None,
        client: str | None = None,
    ) -> Reply:
        """Create a text job and claim its first run, which makes the picture of ``text``
        and, with ``then``, a model of it: admitted like any run (503 queue full, 429 the
        client's share used), journaled before the answer, started in the background.
        ``owner`` is the API key id the job belongs to.
        """
        # From here to the dispatch nothing awaits: admission and claim are atomic.
        if refusal := self._supervisor.admit(client):
            return refusal
        try:
            self._table.add_text(job_id, text, owner)
            plan = RunPlan.IMAGE if then is None else RunPlan.TEXT_TO_MODEL
            record = self._table.start_run(job_id, then, client, plan)
        except OrfeasError as exc:
            return exc
        self._commits.commit(record)  # accepted means journaled
        self._supervisor.dispatch(record)
        self._forget(self._table.evict())
        return self._monitor.snapshot(record)

    @served
    async def heartbeat(self, job_id: str, run: int, stage: Stage, fraction: float) -> Beat:
        """A worker's progress report; the answer says whether it stops (cancelled, or not
        its run) and when it beats next."""
        return self._supervisor.heartbeat(job_id, run, stage, fraction)

    @served
    async def cancel(self, job_id: str) -> Reply:
        """Cancel a job's run: 404 unknown, 409 unless queued or running.

        A queued run ends at once (its workers stop at their first beat, before any work).
        A running run is flagged; its workers learn it at their next heartbeat and stop at
        their next cancel check. The answer waits for that, up to ``CANCEL_GRACE_BEATS``
        heartbeats; a run whose workers have not stopped by then (one waiting for a
        replica, say) is ended here, and they stop whenever they next beat.
        """
        await self._recover(job_id)
        try:
            record = self._table.request_cancel(job_id)
        except OrfeasError as exc:
            return exc
        run = record.run
        self._commits.commit(record)
        if record.status.active:
            grace_s = CANCEL_GRACE_BEATS * self._supervisor.beat_interval()
            if not await self._monitor.wait_until_ended(record, grace_s):
                error = JobCancelledError("the job was cancelled")
                if self._table.fail(job_id, run, error) is not None:
                    forced = (
                        f"the workers did not stop within {grace_s:.2f} s; "
                        "ended without them, they stop at their next heartbeat"
                    )
                    self._commits.commit(record, event=("cancel_forced", forced))
        return self._monitor.snapshot(record)

    @served
    async def make_variant(self, order: VariantOrder) -> Reply:
        """The job with the variant ``order`` names, made once however many ask at once
        (``serve_app.registry.variants``): 404 unknown job or base variant, 409 not
        completed, 503 mesh tools unreachable or over their time."""
        await self._recover(order.job_id)
        return await self._variants.make(order)

    @served
    async def job_log(self, job_id: str) -> JobLog | OrfeasError:
        """The job's recent events, oldest first."""
        await self._recover(job_id)
        if job_id not in self._table:
            return JobNotFoundError(f"no job with id {job_id}", job_id=job_id)
        return self._monitor.read_log(job_id)

    # -- webhooks ------------------------------------------------------------------------

    @served
    async def subscribe(self, subscription: Subscription) -> None:
        """POST the end of a job's run or of a batch to a URL (journaled; fired at once if
        it has ended already)."""
        self._callbacks.subscribe(subscription)

    @served
    async def deliveries(self, kind: TargetKind, target_id: str) -> tuple[Delivery, ...]:
        """The webhook deliveries of a job or batch, oldest first, with their attempts."""
        return tuple(self._callbacks.deliveries(kind, target_id))

    # -- what the ingress replicas follow ----------------------------------------------

    @served
    async def changes(self, epoch: str | None, since: int, timeout_s: float) -> Changes:
        """The feed's changes after position ``since`` of ``epoch``; waits up to
        ``timeout_s`` for one. A reset answer means: list every job again (``sync``).
        """
        return await self._monitor.feed.read(epoch, since, min(max(0.0, timeout_s), MAX_WAIT_S))

    @served
    async def sync(self, offset: int, limit: int) -> SyncPage:
        """Jobs ``offset`` to ``offset + limit`` in memory (oldest first), for a reader that
        follows the feed from the position in the answer.
        """
        feed = self._monitor.feed
        jobs = tuple(self._monitor.snapshot(r) for r in self._table.slice(offset, limit))
        return SyncPage(epoch=feed.epoch, seq=feed.seq, jobs=jobs, total=len(self._table))

    @served
    async def list_jobs(
        self, offset: int, limit: int, status: JobStatus | None, viewer: Viewer
    ) -> JobPage:
        """A page of the jobs ``viewer`` may see, newest first (for a view that is stale)."""
        return self._table.page(offset, limit, status, viewer)

    # -- operators ---------------------------------------------------------------------

    @served
    async def ping(self) -> RegistryHealth:
        journal = self._ledger.journal
        model = self._workers.text_model
        return RegistryHealth(
            jobs={str(status): n for status, n in self._table.counts().items()},
            runs=self._supervisor.stats(),
            variants_in_progress=self._variants.pending,
            generators=dict(self._workers.versions),
            generator_errors=dict(self._workers.errors),
            text_to_image=TextModelHealth(
                version=model.version if model else None, error=self._workers.text_error
            ),
            journal_path=str(journal.path),
            journal_writes=journal.writes,
            journal_mean_write_ms=round(1000 * journal.write_seconds / max(1, journal.writes), 4),
        )

    @served
    async def metrics(self) -> MetricsSnapshot:
        """Service-wide counters, gauges and histograms (what ``GET /metrics`` shows)."""
        return self._monitor.metrics_snapshot()

    async def served_calls(self) -> dict[str, int]:
        """How many calls of each method this registry has served (not counting this)."""
        return dict(self.calls)

    async def collect_garbage(self) -> dict[str, Any]:
        """Expire old ended jobs (TTL, disk budget) and remove the files only they used."""
        expired, result = await retention.collect(
            self._table, self._ledger.journal, self._workers.store, self._config.retention
        )
        self._forget(expired)
        self._callbacks.forget(expired)
        if expired or result.files:
            logger.info(
                "retention: %d jobs expired, %d files (%d bytes) removed",
                len(expired),
                result.files,
                result.bytes,
            )
        return {"expired_jobs": expired, "files": result.files, "bytes": result.bytes}

    # -- internals ---------------------------------------------------------------------

    def _load_journal(self) -> list[str]:
        """Put every journaled job back; return the ids whose run was in flight."""
        start = time.perf_counter()
        records = self._ledger.journal.load_all()
        in_flight = []
        for record in records:
            self._table.restore(record)
            if record.status.active:
                in_flight.append(record.job_id)
        self._forget(self._table.evict())
        if records:
            logger.warning(
                "registry restored %d jobs (%d in flight) from %s in %.3f s",
                len(records),
                len(in_flight),
                self._ledger.path,
                time.perf_counter() - start,
            )
        return in_flight

    async def _retention(self) -> None:
        while True:
            await asyncio.sleep(self._config.retention.interval_s)
            try:
                await self.collect_garbage()
            except Exception:
                logger.exception("retention collector failed")

    async def _recover(self, job_id: str) -> None:
        """Bring back a job evicted from memory (from the journal), or one whose upload is
        stored but that this registry never heard of (its registration failed).
        """
        if job_id in self._table:
            return
        record = self._ledger.load(job_id)
        if record is not None:
            self._table.restore(record)
            self._forget(self._table.evict())
            return
        store = self._workers.store
        upload = await asyncio.to_thread(store.job_upload, job_id)
        if upload is not None and job_id not in self._table:
            owner = await asyncio.to_thread(store.job_owner, job_id)
            record = self._table.add(job_id, upload, owner)
            self._commits.commit(record)

    def _forget(self, job_ids: Iterable[str]) -> None:
        self._monitor.forget(list(job_ids))

    def _find_snapshot(self, job_id: str) -> JobSnapshot | None:
        """A job from memory or the journal, for the webhooks part."""
        record = self._table.find(job_id) or self._ledger.load(job_id)
        return self._monitor.snapshot(record) if record is not None else None


class RegistryActor(JobRegistry):
    """``JobRegistry`` as the named, detached async actor (``build_app`` creates it)."""

    async def __init__(self, config: AppConfig) -> None:  # type: ignore[misc]
        super().__init__(config, RayMetrics())
        self.start()
