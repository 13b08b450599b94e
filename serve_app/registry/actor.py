"""JobRegistry: the named, detached, async Ray actor that owns job state and starts runs.

Runs are dispatched from here, not from the HTTP request that asked for them, so a
client disconnect or an ingress restart cannot cancel or orphan a job. The registry
chains ``shape.build.remote(ticket, background.remove.remote(ticket))``: the cut-out goes
from one replica to the other through Ray's object store, never through the registry.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import ray
from ray.actor import ActorHandle
from ray.serve.handle import DeploymentHandle

from serve_app.config import AppConfig, RegistryConfig
from serve_app.errors import JobCancelledError, JobNotFoundError, OrfeasError
from serve_app.metrics import MetricsSnapshot, RayMetrics
from serve_app.pipeline.types import Stage
from serve_app.policy import RetentionConfig
from serve_app.registry.cache import cache_key
from serve_app.registry.feeds import JobLog, WatchReply
from serve_app.registry.jobs import (
    JobPage,
    JobRecord,
    JobSnapshot,
    JobStatus,
    JobTable,
    JobTicket,
    RunRequest,
    RunResult,
    UploadInfo,
)
from serve_app.registry.monitor import JobMonitor
from serve_app.registry.supervisor import DurableRuns
from serve_app.remote import as_orfeas_error
from serve_app.storage import ArtifactStore

logger = logging.getLogger(__name__)

#: Heartbeats a cancelled run's workers get to stop before the run is ended without them.
CANCEL_GRACE_BEATS = 3
#: Longest a watcher's call waits in the registry before it gets an empty reply.
MAX_WATCH_S = 30.0


@dataclass(frozen=True)
class RegistrySettings:
    """What the registry needs from the application config."""

    storage_root: Path
    background_model: str
    max_jobs: int
    heartbeat_interval_s: float = 0.25
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    @classmethod
    def from_config(cls, config: AppConfig) -> RegistrySettings:
        return cls(
            storage_root=config.storage.root,
            background_model=config.pipeline.background_model,
            max_jobs=config.registry.max_jobs,
            heartbeat_interval_s=config.registry.heartbeat_interval_s,
            registry=config.registry,
            retention=config.retention,
        )


@dataclass(frozen=True)
class Backends:
    """Handles of the two worker deployments a run goes through."""

    background: DeploymentHandle
    shape: DeploymentHandle


#: A registry answer: the job, or the refusal (404, 409) returned rather than raised,
#: because expected refusals are cheaper as values than as remote exceptions.
Reply = JobSnapshot | OrfeasError


class JobRegistry(DurableRuns):
    """One source of truth for jobs: claims runs atomically and drives them to an end.

    Every method runs on the actor's single event loop and mutates the table without
    awaiting in between, so "one active run per job" needs no lock.
    """

    async def __init__(self, settings: RegistrySettings) -> None:  # type: ignore[misc]
        self._settings = settings
        self._store = ArtifactStore(settings.storage_root)
        self._table = JobTable(settings.max_jobs)
        self._versions: dict[str, str] = {}
        self._handles: dict[tuple[str, str], DeploymentHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._monitor = JobMonitor(self._find, sink=RayMetrics())
        self._open_durability()  # journal, watchdog, resume of in-flight runs, retention

    async def configure(self, settings: RegistrySettings) -> None:
        """Adopt the settings of the application that is (re)deployed now."""
        if settings != self._settings:
            self._settings = settings
            self._store = ArtifactStore(settings.storage_root)
            self._table.max_jobs = settings.max_jobs
            self._reopen_journal()

    async def ping(self) -> dict[str, Any]:
        return {
            "jobs": self._table.counts(),
            "running_tasks": len(self._tasks),
            "generators": dict(self._versions),
        }

    async def register_upload(self, job_id: str, upload: UploadInfo) -> Reply:
        try:
            record = self._table.add(job_id, upload)
        except OrfeasError as exc:
            return exc
        self._journal_save(record)
        self._monitor.uploaded(record)
        if len(self._monitor.feeds) > self._table.max_jobs + 1000:
            self._monitor.forget(lambda j: j in self._table)
        return self._monitor.snapshot(record)

    async def get(self, job_id: str) -> Reply:
        await self._recover(job_id)
        try:
            return self._monitor.snapshot(self._table.get(job_id))
        except OrfeasError as exc:
            return exc

    async def list_jobs(self, offset: int, limit: int, status: JobStatus | None) -> JobPage:
        return self._table.page(offset, limit, status)

    async def submit(
        self, job_id: str, request: RunRequest, backends: Backends, client: str | None = None
    ) -> Reply:
        """Claim a new run (404 unknown, 409 active, 503 queue full, 429 client's share
        used) and start it in the background; ``client`` is an API key id or an address.
        """
        await self._recover(job_id)
        # From here to the dispatch nothing awaits: admission and claim are atomic.
        try:
            if not self._table.get(job_id).status.active and (refusal := self._admit(client)):
                return refusal
            record = self._table.start_run(job_id, request)
        except OrfeasError as exc:
            return exc
        record.client = client
        self._journal_save(record)  # accepted means journaled
        self._dispatch(record, backends)
        self._monitor.changed(record)
        return self._monitor.snapshot(record)

    async def heartbeat(self, job_id: str, run: int, stage: str, fraction: float) -> bool:
        """A worker's progress report; True tells it to stop (cancelled, or no longer its run)."""
        stop = self._table.report_progress(job_id, run, Stage(stage), fraction)
        record = self._table.current(job_id, run)
        if record is not None:
            self._renew(job_id, run, stage, fraction)
            self._monitor.changed(record)
        return stop

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
        self._journal_save(record)
        self._monitor.changed(record)
        if record.status.active:
            grace_s = CANCEL_GRACE_BEATS * self._settings.heartbeat_interval_s
            if not await self._monitor.wait_until_ended(record, grace_s):
                error = JobCancelledError("the job was cancelled").to_dict()
                if self._table.fail(job_id, run, error) is not None:
                    self._monitor.log(
                        record,
                        "cancel_forced",
                        f"the workers did not stop within {grace_s:.2f} s; "
                        "ended without them, they stop at their next heartbeat",
                    )
                    self._journal_save(record)
                    self._monitor.changed(record)
        return self._monitor.snapshot(record)

    async def watch(
        self, job_id: str, since: int | None, timeout_s: float
    ) -> WatchReply | OrfeasError:
        """The job's state (``since`` None) or its changes after version ``since``.

        Waits up to ``timeout_s`` for a change (an empty reply: nothing changed).
        """
        await self._recover(job_id)
        try:
            record = self._table.get(job_id)
        except OrfeasError as exc:
            return exc
        return await self._monitor.watch(record, since, min(max(0.0, timeout_s), MAX_WATCH_S))

    async def job_log(self, job_id: str) -> JobLog | OrfeasError:
        """The job's recent events, oldest first."""
        await self._recover(job_id)
        if job_id not in self._table:
            return JobNotFoundError(f"no job with id {job_id}", job_id=job_id)
        return self._monitor.read_log(job_id)

    async def metrics(self) -> MetricsSnapshot:
        """Service-wide counters, gauges and histograms (what ``GET /metrics`` shows)."""
        return self._monitor.metrics_snapshot()

    async def report_generator(self, name: str, version: str) -> None:
        """A ShapeTexture replica says which generator version it runs (for cache keys)."""
        self._versions[name] = version

    async def _run(self, ticket: JobTicket, backends: Backends) -> None:
        job_id, run = ticket.job_id, ticket.run
        try:
            result = await self._from_cache(ticket)
            if result is None and self._table.current(job_id, run) is None:
                return  # cancelled while the cache was checked: never dispatched
            if result is None:
                background = self._handle(backends.background)
                shape = self._handle(backends.shape)
                cutout = background.remove.remote(ticket)
                result = await shape.build.remote(ticket, cutout)
            self._versions[result.generator] = result.generator_version
            record = self._table.complete(job_id, run, result)
        except Exception as exc:  # every failure ends the run with a safe error body
            error = as_orfeas_error(exc)
            if self._retried(ticket, error, backends):  # a lost worker: run it again
                return
            if error.status_code >= 500:
                logger.warning("job %s run %d failed: %s", job_id, run, error.message)
            record = self._table.fail(job_id, run, error.to_dict())
            if isinstance(error, JobCancelledError):
                if record is not None:
                    self._monitor.changed(record)
                self._monitor.feeds.log(
                    job_id, run, "workers_stopped", f"the workers of run {run} stopped"
                )
                return
        if record is not None:
            self._monitor.changed(record)

    async def _from_cache(self, ticket: JobTicket) -> RunResult | None:
        """A finished result if this exact generation is already stored."""
        generator = ticket.request.generator
        version = self._versions.get(generator)
        if version is None:
            return None
        key = cache_key(
            ticket.upload.sha256,
            ticket.request.params,
            self._settings.background_model,
            generator,
            version,
        )
        if not await asyncio.to_thread(self._store.touch_mesh, key):
            return None
        return RunResult(
            artifact_key=key,
            formats=(),
            generator=generator,
            generator_version=version,
            cached=True,
        )

    async def _recover(self, job_id: str) -> None:
        """Re-adopt a job this registry does not know but whose upload is stored."""
        if job_id in self._table or self._journal_load(job_id):
            return
        upload = await asyncio.to_thread(self._store.job_upload, job_id)
        if upload is not None and job_id not in self._table:
            self._monitor.changed(self._table.add(job_id, upload))

    def _find(self, job_id: str) -> JobRecord | None:
        return self._table.get(job_id) if job_id in self._table else None

    def _handle(self, handle: DeploymentHandle) -> DeploymentHandle:
        """One long-lived handle per deployment (each new handle would open a router)."""
        key = (handle.app_name, handle.deployment_name)
        return self._handles.setdefault(key, handle)


def connect_registry(config: AppConfig) -> ActorHandle:
    """The registry actor, created on first use; every caller gets the same one."""
    settings = config.registry
    actor = (
        ray.remote(JobRegistry)
        .options(
            name=settings.name,
            namespace=settings.namespace,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=settings.num_cpus,
            max_concurrency=1000,
            max_restarts=-1,
        )
        .remote(RegistrySettings.from_config(config))
    )
    return cast(ActorHandle, actor)


class RegistryClient:
    """The ingress's typed view of the registry; errors come back as OrfeasError."""

    def __init__(self, actor: ActorHandle, backends: Backends) -> None:
        self._actor = actor
        self._backends = backends

    async def register_upload(self, job_id: str, upload: UploadInfo) -> JobSnapshot:
        return await self._call("register_upload", job_id, upload)

    async def submit(
        self, job_id: str, request: RunRequest, client: str | None = None
    ) -> JobSnapshot:
        return await self._call("submit", job_id, request, self._backends, client)

    async def get(self, job_id: str) -> JobSnapshot:
        return await self._call("get", job_id)

    async def list_jobs(self, offset: int, limit: int, status: JobStatus | None) -> JobPage:
        return await self._call("list_jobs", offset, limit, status)

    async def ping(self) -> dict[str, Any]:
        return await self._call("ping")

    async def cancel(self, job_id: str) -> JobSnapshot:
        return await self._call("cancel", job_id)

    async def watch(self, job_id: str, since: int | None, timeout_s: float) -> WatchReply:
        return await self._call("watch", job_id, since, timeout_s)

    async def job_log(self, job_id: str) -> JobLog:
        return await self._call("job_log", job_id)

    async def metrics(self) -> MetricsSnapshot:
        return await self._call("metrics")

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            reply = await getattr(self._actor, method).remote(*args)
        except (OrfeasError, ray.exceptions.RayError) as exc:
            raise as_orfeas_error(exc) from None
        if isinstance(reply, OrfeasError):
            raise reply
        return reply
