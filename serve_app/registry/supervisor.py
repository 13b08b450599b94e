"""What keeps the JobRegistry's promises through faults: journal, leases, admission, retention.

``DurableRuns`` is a mixin of ``JobRegistry`` (it uses the registry's table, monitor and
``_run``); the registry calls its hooks at each change. All of it runs on the actor's one
event loop; only file walks and deletions go to threads.

- **Journal**: every new job, claimed run, retry and end is written to SQLite before the
  registry answers, and loaded when the actor starts (after a kill, a restart of the
  whole service, or a move to another node with the same storage).
- **Resume**: runs that were queued or running when the registry went are dispatched
  again as a new run (their old workers, if alive, are told to stop at their next beat),
  or, if no worker deployment answers within ``resume_timeout_s``, fail as ``interrupted``.
- **Leases**: a dispatched run's lease lasts ``queue_timeout_s`` until its worker's first
  heartbeat, then ``lease_s`` per beat. A lost worker is noticed when its handle call
  fails, or when its lease expires; the run is retried up to ``max_retries`` times, then
  failed with a retryable ``model_unavailable`` error.
- **Admission**: at most ``max_active_jobs`` active runs (503 beyond) and
  ``max_active_per_client`` per client (429 beyond), both with a Retry-After.
- **Retention**: a collector removes old ended jobs and the files only they used.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serve_app.errors import (
    JobInterruptedError,
    OrfeasError,
    RateLimitedError,
    ServiceOverloadedError,
    WorkerLostError,
)
from serve_app.pipeline.types import Stage
from serve_app.registry.jobs import JobRecord, JobTicket
from serve_app.registry.journal import JobJournal
from serve_app.registry.leases import Lease, LeaseBook
from serve_app.registry.retention import Sweep, plan_expiry, scan_store, sweep

if TYPE_CHECKING:
    from serve_app.registry.actor import Backends, RegistrySettings
    from serve_app.registry.jobs import JobTable
    from serve_app.registry.monitor import JobMonitor
    from serve_app.storage import ArtifactStore

logger = logging.getLogger(__name__)

JOURNAL_FILE = Path("registry") / "journal.sqlite3"


def journal_path(settings: RegistrySettings) -> Path:
    """The configured journal file, or the default one under the storage root."""
    return settings.registry.journal_path or settings.storage_root / JOURNAL_FILE


@dataclass
class _Dispatch:
    """The task driving one run, so the watchdog can stop it when its lease expires."""

    run: int
    task: asyncio.Task[None]


class DurableRuns:
    """Journal, leases and watchdog, admission, retries, resume and retention (a mixin)."""

    _settings: RegistrySettings
    _table: JobTable
    _store: ArtifactStore
    _monitor: JobMonitor
    _tasks: set[asyncio.Task[None]]

    # -- start -----------------------------------------------------------------------

    def _open_durability(self) -> None:
        """Open the journal, load it, and start the watchdog, resume and retention tasks.

        Called from the actor's (async) constructor, on the event loop.
        """
        self._journal = JobJournal(journal_path(self._settings))
        self._leases = LeaseBook()
        self._dispatches: dict[str, _Dispatch] = {}
        self._overloads: dict[str, int] = {}  # re-dispatches of a job after a full queue
        self._backends: Backends | None = None
        self._resume_ids = self._load_journal()
        self._last_sweep: Sweep | None = None
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._watchdog(), name="registry-watchdog"),
            loop.create_task(self._retention(), name="registry-retention"),
        ]
        if self._resume_ids:
            self._loops.append(loop.create_task(self._resume(), name="registry-resume"))

    def _load_journal(self) -> list[str]:
        """Put every journaled job back; return the ids whose run was in flight."""
        start = time.perf_counter()
        records = self._journal.load_all()
        in_flight = []
        for record in records:
            self._table.restore(record)
            if record.status.active:
                in_flight.append(record.job_id)
        if records:
            logger.warning(
                "registry restored %d jobs (%d in flight) from %s in %.3f s",
                len(records),
                len(in_flight),
                self._journal.path,
                time.perf_counter() - start,
            )
        return in_flight

    def _reopen_journal(self) -> None:
        """The storage root or journal path changed (a redeploy): switch journals."""
        path = journal_path(self._settings)
        if path == self._journal.path:
            return
        self._journal.close()
        self._journal = JobJournal(path)
        for record in self._journal.load_all():
            if record.job_id not in self._table:
                self._table.restore(record)

    # -- journal ---------------------------------------------------------------------

    def _journal_save(self, *records: JobRecord) -> None:
        try:
            self._journal.save(*records)
        except sqlite3.Error:  # the service keeps serving; the log says what is at risk
            logger.exception("could not journal jobs %s", [r.job_id for r in records])

    def _journal_load(self, job_id: str) -> bool:
        """Bring back a job known to the journal but not (any more) in memory."""
        try:
            record = self._journal.load(job_id)
        except sqlite3.Error:
            logger.exception("could not read job %s from the journal", job_id)
            return False
        if record is None or job_id in self._table:
            return False
        self._table.restore(record)
        return True

    # -- admission and dispatch ------------------------------------------------------

    def _admit(self, client: str | None) -> OrfeasError | None:
        """Refuse a new run when the queue is full (503) or the client has its share (429)."""
        policy = self._settings.registry
        retry_after = policy.retry_after_s
        if len(self._leases) >= policy.max_active_jobs:
            return ServiceOverloadedError(
                f"the service has {policy.max_active_jobs} jobs queued or running; "
                f"retry in {retry_after} s",
                retry_after_s=retry_after,
            )
        if client is not None and self._leases.held_by(client) >= policy.max_active_per_client:
            return RateLimitedError(
                f"you have {policy.max_active_per_client} jobs queued or running; wait for "
                "one to end",
                retry_after_s=retry_after,
            )
        return None

    def _remember_backends(self, backends: Backends) -> None:
        if self._backends == backends:
            return
        self._backends = backends
        meta = {
            "app": backends.shape.app_name,
            "background": backends.background.deployment_name,
            "shape": backends.shape.deployment_name,
        }
        try:
            if self._journal.get_meta("backends") != meta:
                self._journal.set_meta("backends", meta)
        except sqlite3.Error:
            logger.exception("could not journal the worker deployments")

    def _dispatch(self, record: JobRecord, backends: Backends, delay_s: float = 0.0) -> JobTicket:
        """Start ``record``'s current run in the background, holding a lease for it."""
        assert record.request is not None
        ticket = JobTicket(
            job_id=record.job_id, run=record.run, upload=record.upload, request=record.request
        )
        self._remember_backends(backends)
        self._leases.grant(
            record.job_id,
            record.run,
            record.client,
            self._settings.registry.queue_timeout_s + delay_s,
            time.monotonic(),
        )
        task = asyncio.create_task(
            self._run_later(ticket, backends, delay_s), name=f"job-{record.job_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._dispatches[record.job_id] = _Dispatch(run=record.run, task=task)
        return ticket

    async def _run_later(self, ticket: JobTicket, backends: Backends, delay_s: float) -> None:
        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            await self._run(ticket, backends)  # type: ignore[attr-defined]
        finally:
            self._run_ended(ticket.job_id, ticket.run)

    def _renew(self, job_id: str, run: int, stage: str, fraction: float) -> None:
        """A heartbeat: renew the lease, or hand it on when background removal is done."""
        now = time.monotonic()
        if stage == Stage.BACKGROUND_REMOVAL and fraction >= 1.0:
            self._leases.hand_over(job_id, run, self._settings.registry.queue_timeout_s, now)
        else:
            self._leases.renew(job_id, run, self._settings.registry.lease_s, now)

    def _run_ended(self, job_id: str, run: int) -> None:
        """The run's task is over (completed, failed, cancelled, or retried as a new run)."""
        self._leases.release(job_id, run)
        dispatch = self._dispatches.get(job_id)
        if dispatch is not None and dispatch.run == run:
            del self._dispatches[job_id]
        if job_id in self._table:
            record = self._table.get(job_id)
            if not record.status.active:
                self._overloads.pop(job_id, None)
            self._journal_save(record)

    def _retried(self, ticket: JobTicket, error: OrfeasError, backends: Backends) -> bool:
        """Dispatch the run again if ``error`` allows it; True when a new run started."""
        record = self._table.current(ticket.job_id, ticket.run)
        if record is None or record.cancel_requested:
            return False
        if isinstance(error, ServiceOverloadedError):  # a worker queue was full: wait
            policy = self._settings.registry
            waits = self._overloads.get(ticket.job_id, 0) + 1
            if waits * policy.retry_after_s > policy.queue_timeout_s:
                return False  # waited a queue timeout: the run fails (retryable 503)
            self._overloads[ticket.job_id] = waits
            self._requeue(record, backends, "overloaded", error.message, count=False)
            return True
        if (
            isinstance(error, WorkerLostError)
            and record.retries < self._settings.registry.max_retries
        ):
            self._requeue(record, backends, "retried", error.message, count=True)
            return True
        return False

    def _requeue(
        self, record: JobRecord, backends: Backends, event: str, reason: str, count: bool
    ) -> None:
        old_run = record.run
        self._leases.release(record.job_id, old_run)
        self._table.retry_run(record.job_id, old_run, count=count)
        delay = float(self._settings.registry.retry_after_s) if event == "overloaded" else 0.0
        self._journal_save(record)
        self._dispatch(record, backends, delay_s=delay)
        logger.warning(
            "job %s run %d %s as run %d: %s", record.job_id, old_run, event, record.run, reason
        )
        self._monitor.log(record, event, f"run {old_run} {event} as run {record.run}: {reason}")
        self._monitor.changed(record)

    # -- watchdog --------------------------------------------------------------------

    async def _watchdog(self) -> None:
        """Every ``watchdog_interval_s``: drop leases of ended runs, act on expired ones.

        A wake-up later than a whole interval means this registry could not run meanwhile
        (a long journal write, a starved or paused machine), so heartbeats may be waiting
        unread: the leases are postponed by the delay before any is judged.
        """
        interval = self._settings.registry.watchdog_interval_s
        due = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            if (late := now - due) > interval:
                logger.warning("registry stalled for %.1f s; leases postponed by as much", late)
                self._leases.postpone(late)
            due = now + interval
            try:
                self._watch_leases(now)
            except Exception:  # the watchdog must outlive any one bad record
                logger.exception("registry watchdog failed")

    def _watch_leases(self, now: float) -> None:
        for lease in self._leases.leases():
            if self._table.current(lease.job_id, lease.run) is None:  # ended (a cancel, say)
                self._run_ended(lease.job_id, lease.run)
        for lease in self._leases.expired(now):
            self._expire(lease)

    def _expire(self, lease: Lease) -> None:
        """A lease ran out: stop waiting for its worker; retry the run or fail it."""
        job_id, run = lease.job_id, lease.run
        record = self._table.current(job_id, run)
        dispatch = self._dispatches.get(job_id)
        if dispatch is not None and dispatch.run == run:
            dispatch.task.cancel()
        waited = "heartbeat" if lease.held_by_worker else "free worker"
        error = WorkerLostError(
            f"no {waited} for run {run} within its lease; the worker is presumed lost",
            retryable=True,
        )
        if record is None:
            self._run_ended(job_id, run)
            return
        if self._backends is not None and self._retried(
            JobTicket(job_id, run, record.upload, record.request),  # type: ignore[arg-type]
            error,
            self._backends,
        ):
            return
        self._table.fail(job_id, run, error.to_dict())
        self._monitor.log(record, "lease_expired", error.message)
        self._monitor.changed(record)
        self._run_ended(job_id, run)

    # -- resume after a restart ------------------------------------------------------

    async def _resume(self) -> None:
        """Dispatch the runs that were in flight when the registry went, as new runs."""
        deadline = time.monotonic() + self._settings.registry.resume_timeout_s
        while self._resume_ids:
            backends = self._backends or await self._backends_from_journal()
            if backends is not None:
                for job_id in self._resume_ids:
                    record = self._table.get(job_id) if job_id in self._table else None
                    if record is not None and record.status.active and record.request:
                        self._requeue(
                            record, backends, "resumed", "the registry restarted", count=False
                        )
                self._resume_ids = []
                return
            if time.monotonic() >= deadline:
                self._interrupt(self._resume_ids)
                self._resume_ids = []
                return
            await asyncio.sleep(1.0)

    async def _backends_from_journal(self) -> Backends | None:
        from serve_app.registry.actor import Backends

        meta: dict[str, str] | None = self._journal.get_meta("backends")
        if not meta:
            return None
        try:
            from ray import serve

            backends = Backends(
                background=serve.get_deployment_handle(meta["background"], app_name=meta["app"]),
                shape=serve.get_deployment_handle(meta["shape"], app_name=meta["app"]),
            )
        except Exception as exc:  # Serve or the application is not (yet) there
            logger.info("worker deployments not reachable yet: %s", exc)
            return None
        self._backends = backends
        return backends

    def _interrupt(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            record = self._table.get(job_id) if job_id in self._table else None
            if record is None or not record.status.active:
                continue
            error = JobInterruptedError(
                "the service restarted while the job was in flight; submit it again",
                retryable=True,
            )
            self._table.fail(job_id, record.run, error.to_dict())
            self._monitor.changed(record)
            self._journal_save(record)

    # -- retention -------------------------------------------------------------------

    async def _retention(self) -> None:
        while True:
            await asyncio.sleep(self._settings.retention.interval_s)
            try:
                await self.collect_garbage()
            except Exception:
                logger.exception("retention collector failed")

    async def collect_garbage(self) -> dict[str, Any]:
        """Expire old ended jobs (TTL, disk budget) and remove the files only they used."""
        config = self._settings.retention
        store = self._store
        scan = await asyncio.to_thread(scan_store, store)
        now = time.time()
        expired = [
            job_id
            for job_id in plan_expiry(self._journal, config, scan, now)
            if job_id not in self._table or not self._table.get(job_id).status.active
        ]
        expired_refs = self._journal.refs_of(expired)
        for job_id in expired:
            self._table.remove(job_id)
        self._journal.delete(expired)
        uploads, keys = self._journal.references()
        for record in self._table.records():  # in memory, maybe newer than the journal
            uploads.add(record.upload.sha256)
            if record.result:
                keys.add(record.result.artifact_key)
        remaining = (
            self._journal.job_ids() | {r.job_id for r in self._table.records()},
            uploads,
            keys,
        )
        result = await asyncio.to_thread(
            sweep, store.root, scan, expired, expired_refs, remaining, config, now
        )
        self._last_sweep = result
        if expired or result.files:
            logger.info(
                "retention: %d jobs expired, %d files (%d bytes) removed",
                len(expired),
                result.files,
                result.bytes,
            )
        return {"expired_jobs": expired, "files": result.files, "bytes": result.bytes}

    async def durability(self) -> dict[str, Any]:
        """Leases, pending resumes and the journal's write cost (for health and tests)."""
        journal = self._journal
        return {
            "leases": len(self._leases),
            "resuming": len(self._resume_ids),
            "journal": str(journal.path),
            "journal_writes": journal.writes,
            "journal_mean_write_ms": round(
                1000 * journal.write_seconds / max(1, journal.writes), 4
            ),
        }
