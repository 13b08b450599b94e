"""The supervisor: admits runs, dispatches them, and drives each to an end through faults.

Built from the registry's parts (table, monitor, journal, workers) and handed them; it
runs on the actor's one event loop.

- **Chain**: a run goes through its plan's stages. A text run first has its picture made
  (``text_to_image``); the picture is recorded and journaled as the job's input, and the
  run then ends (a picture alone) or goes on through the model stages as a model run of
  that picture does, under the same run number and lease.

- **Admission**: at most ``max_active_jobs`` active runs (503 beyond) and
  ``max_active_per_client`` per client (429 beyond), both with a Retry-After.
- **Leases**: a dispatched run's lease lasts ``queue_timeout_s`` until its worker's first
  heartbeat, then ``lease_s`` per beat (at least four of the beats the registry asks for:
  with many leases, it asks for fewer, see ``serve_app.registry.leases``). A lost worker
  is noticed when its handle call fails, or when its lease expires (the watchdog); the
  run is retried up to ``max_retries`` times, then failed with a retryable
  ``model_unavailable`` error.
- **Resume**: runs that were queued or running when the registry went are dispatched
  again as a new run (their old workers, if alive, are told to stop at their next beat),
  or, if no worker deployment answers within ``resume_timeout_s``, fail as ``interrupted``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from serve_app.config import RegistryConfig
from serve_app.contracts.runs import ImageTicket, JobTicket, RunRequest
from serve_app.contracts.stages import Stage
from serve_app.errors import (
    JobCancelledError,
    JobInterruptedError,
    OrfeasError,
    RateLimitedError,
    ServiceOverloadedError,
    WorkerLostError,
    WorkersUnavailableError,
)
from serve_app.ray_errors import as_orfeas_error
from serve_app.registry.commits import Change, Commits
from serve_app.registry.jobs import JobRecord
from serve_app.registry.leases import Beat, Lease, LeaseBook
from serve_app.registry.monitor import JobMonitor
from serve_app.registry.table import JobTable
from serve_app.registry.workers import Workers

logger = logging.getLogger(__name__)

#: Stages after which a run passes to another deployment: its lease waits for a free
#: worker again once they report their end.
HANDOVER_STAGES = frozenset({Stage.TEXT_TO_IMAGE, Stage.BACKGROUND_REMOVAL})
#: A lease lasts at least this many beats at the interval the registry asks for.
LEASE_BEATS = 4


class Requeue(StrEnum):
    """Why a run is dispatched again, as a new run of the same request."""

    #: A worker queue was full: wait ``retry_after_s``; not counted against the retries.
    OVERLOADED = "overloaded"
    #: No worker could take it (its deployment is being deleted or redeployed): wait
    #: ``retry_after_s`` for one to come back; not counted against the retries.
    UNAVAILABLE = "unavailable"
    #: Its worker was lost: counted against ``max_retries``.
    RETRIED = "retried"
    #: The registry restarted while the run was in flight.
    RESUMED = "resumed"


@dataclass(frozen=True)
class SupervisorStats:
    """Runs in the supervisor's hands: leases held, tasks driving runs, runs to resume."""

    leases: int
    running_tasks: int
    resuming: int


@dataclass
class _Dispatch:
    """The task driving one run, so the watchdog can stop it when its lease expires."""

    run: int
    task: asyncio.Task[None]


class Supervisor:
    """Admission, dispatch, leases and their watchdog, retries and resume."""

    def __init__(
        self,
        table: JobTable,
        monitor: JobMonitor,
        commits: Commits,
        workers: Workers,
        policy: RegistryConfig,
    ) -> None:
        self.policy = policy
        self.leases = LeaseBook()
        self._table = table
        self._monitor = monitor
        self._commits = commits
        self._workers = workers
        self._dispatches: dict[str, _Dispatch] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self._waits: dict[str, int] = {}  # re-dispatches of a job that waited for a worker
        self._resuming: list[str] = []

    def stats(self) -> SupervisorStats:
        return SupervisorStats(
            leases=len(self.leases), running_tasks=len(self._tasks), resuming=len(self._resuming)
        )

    # -- admission and dispatch ------------------------------------------------------

    def admit(self, client: str | None) -> OrfeasError | None:
        """Refuse a new run when the queue is full (503) or the client has its share (429)."""
        policy = self.policy
        retry_after = policy.retry_after_s
        if len(self.leases) >= policy.max_active_jobs:
            return ServiceOverloadedError(
                f"the service has {policy.max_active_jobs} jobs queued or running; "
                f"retry in {retry_after} s",
                retry_after_s=retry_after,
            )
        if client is not None and self._held_by(client) >= policy.max_active_per_client:
            return RateLimitedError(
                f"you have {policy.max_active_per_client} jobs queued or running; wait for "
                "one to end",
                retry_after_s=retry_after,
            )
        return None

    def dispatch(self, record: JobRecord, delay_s: float = 0.0) -> None:
        """Start ``record``'s current run in the background, holding a lease for it."""
        assert record.dispatchable, record.job_id
        job_id, run = record.job_id, record.run
        ticket: JobTicket | ImageTicket
        if record.plan.makes_image:
            assert record.text is not None
            ticket = ImageTicket(job_id, run, record.text, record.owner)
        else:
            assert record.upload is not None and record.request is not None
            ticket = JobTicket(job_id, run, record.upload, record.request)
        then = record.request if record.plan.makes_model else None
        self.leases.grant(job_id, run, self.policy.queue_timeout_s + delay_s, time.monotonic())
        task = asyncio.create_task(self._drive(ticket, then, delay_s), name=f"job-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._dispatches[job_id] = _Dispatch(run=run, task=task)

    def beat_interval(self) -> float:
        """How often each worker is asked to beat: the configured interval, or longer when
        the leases at that interval would send more than the budget of beats per second."""
        policy = self.policy
        return max(policy.heartbeat_interval_s, self.leases.held / policy.heartbeat_budget_per_s)

    def heartbeat(self, job_id: str, run: int, stage: Stage, fraction: float) -> Beat:
        """A worker's progress report; the answer says whether it stops (cancelled, or not
        its run) and when it beats next.

        Renews the run's lease, or hands it on when a stage that passes the run to another
        deployment (text to image, background removal) is done.
        """
        stop = self._table.report_progress(job_id, run, stage, fraction)
        record = self._table.current(job_id, run)
        if record is None:
            return Beat(stop, self.beat_interval())
        now = time.monotonic()
        if stage in HANDOVER_STAGES and fraction >= 1.0:
            self.leases.hand_over(job_id, run, self.policy.queue_timeout_s, now)
            interval = self.beat_interval()
        else:
            self.leases.renew(job_id, run, self.policy.lease_s, now)
            interval = self.beat_interval()  # this worker's lease counted
            if LEASE_BEATS * interval > self.policy.lease_s:
                self.leases.renew(job_id, run, LEASE_BEATS * interval, now)
        self._commits.commit(record, Change.PROGRESS)
        return Beat(stop, interval)

    def _held_by(self, client: str) -> int:
        """How many active runs ``client`` submitted."""
        held = 0
        for lease in self.leases.leases():
            record = self._table.find(lease.job_id)
            held += record is not None and record.client == client
        return held

    # -- driving one run ---------------------------------------------------------------

    async def _drive(
        self, ticket: JobTicket | ImageTicket, then: RunRequest | None, delay_s: float
    ) -> None:
        """Run ``ticket``: a model run, or a text run (its picture, then the model ``then``
        asks for, if any)."""
        job_id, run = ticket.job_id, ticket.run

        def current() -> bool:
            return self._table.current(job_id, run) is not None

        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            if isinstance(ticket, ImageTicket):
                model_ticket = await self._make_image(ticket, then, current)
                if model_ticket is None:  # a picture alone, or the run ended meanwhile
                    return
            else:
                model_ticket = ticket
            result = await self._workers.run(model_ticket, current)
            if result is not None and (record := self._table.complete(job_id, run, result)):
                self._commits.commit(record)
        except Exception as exc:  # every failure ends the run with a safe error body
            self._failed(ticket, as_orfeas_error(exc))
        finally:
            self._run_ended(job_id, run)

    async def _make_image(
        self, ticket: ImageTicket, then: RunRequest | None, current: Callable[[], bool]
    ) -> JobTicket | None:
        """A text run's first stage: its picture, recorded and journaled as the job's input.

        Completes the run when it asks for a picture alone; returns the ticket of the model
        stages that follow otherwise, or None when the run ended meanwhile.
        """
        job_id, run = ticket.job_id, ticket.run
        image = await self._workers.make_image(ticket, current)
        if image is None or (record := self._table.image_made(job_id, run, image)) is None:
            return None
        self.leases.hand_over(job_id, run, self.policy.queue_timeout_s, time.monotonic())
        self._commits.commit(record, Change.IMAGE_MADE)
        if then is None:
            if (done := self._table.complete(job_id, run, None)) is not None:
                self._commits.commit(done)
            return None
        if not current():
            return None
        return JobTicket(job_id, run, image.upload, then)

    def _failed(self, ticket: JobTicket | ImageTicket, error: OrfeasError) -> None:
        job_id, run = ticket.job_id, ticket.run
        if self._retried(job_id, run, error):  # a lost worker or a full queue: again
            return
        if error.status_code >= 500:
            logger.warning("job %s run %d failed: %s", job_id, run, error.message)
        record = self._table.fail(job_id, run, error)
        if record is not None:
            self._commits.commit(record)
        if isinstance(error, JobCancelledError):
            self._monitor.logs.log(
                job_id, run, "workers_stopped", f"the workers of run {run} stopped"
            )

    def _run_ended(self, job_id: str, run: int) -> None:
        """The run's task is over (completed, failed, cancelled, or retried as a new run)."""
        self.leases.release(job_id, run)
        dispatch = self._dispatches.get(job_id)
        if dispatch is not None and dispatch.run == run:
            del self._dispatches[job_id]
        record = self._table.find(job_id)
        if record is not None and not record.status.active:
            self._waits.pop(job_id, None)

    def _retried(self, job_id: str, run: int, error: OrfeasError) -> bool:
        """Dispatch the run again if ``error`` allows it; True when a new run started."""
        record = self._table.current(job_id, run)
        if record is None or record.cancel_requested:
            return False
        if isinstance(error, ServiceOverloadedError | WorkersUnavailableError):
            # A full worker queue, or no worker at all for now: wait for one.
            waits = self._waits.get(job_id, 0) + 1
            if waits * self.policy.retry_after_s > self.policy.queue_timeout_s:
                return False  # waited a queue timeout: the run fails (retryable 503)
            self._waits[job_id] = waits
            reason = (
                Requeue.OVERLOADED
                if isinstance(error, ServiceOverloadedError)
                else Requeue.UNAVAILABLE
            )
            self.requeue(record, reason, error.message)
            return True
        if isinstance(error, WorkerLostError) and record.retries < self.policy.max_retries:
            self.requeue(record, Requeue.RETRIED, error.message)
            return True
        return False

    def requeue(self, record: JobRecord, reason: Requeue, message: str) -> None:
        """Dispatch ``record``'s active run again as a new run."""
        old_run = record.run
        self.leases.release(record.job_id, old_run)
        self._table.retry_run(record.job_id, old_run, count=reason is Requeue.RETRIED)
        waits = reason in (Requeue.OVERLOADED, Requeue.UNAVAILABLE)
        delay = float(self.policy.retry_after_s) if waits else 0.0
        self.dispatch(record, delay_s=delay)
        logger.warning(
            "job %s run %d %s as run %d: %s", record.job_id, old_run, reason, record.run, message
        )
        again = f"run {old_run} {reason} as run {record.run}: {message}"
        self._commits.commit(record, event=(reason, again))

    # -- watchdog --------------------------------------------------------------------

    async def watchdog(self) -> None:
        """Every ``watchdog_interval_s``: drop leases of ended runs, act on expired ones.

        A wake-up later than a whole interval means this registry could not run meanwhile
        (a long journal write, a starved or paused machine), so heartbeats may be waiting
        unread: the leases are postponed by the delay before any is judged.
        """
        due = time.monotonic() + self.policy.watchdog_interval_s
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            interval = self.policy.watchdog_interval_s
            if (late := now - due) > interval:
                logger.warning("registry stalled for %.1f s; leases postponed by as much", late)
                self.leases.postpone(late)
            due = now + interval
            try:
                self.watch_leases(now)
            except Exception:  # the watchdog must outlive any one bad record
                logger.exception("registry watchdog failed")

    def watch_leases(self, now: float) -> None:
        for lease in self.leases.leases():
            if self._table.current(lease.job_id, lease.run) is None:  # ended (a cancel, say)
                self._run_ended(lease.job_id, lease.run)
        for lease in self.leases.expired(now):
            self._expire(lease)

    def _expire(self, lease: Lease) -> None:
        """A lease ran out: stop waiting for its worker; retry the run or fail it."""
        job_id, run = lease.job_id, lease.run
        dispatch = self._dispatches.get(job_id)
        if dispatch is not None and dispatch.run == run:
            dispatch.task.cancel()
        waited = "heartbeat" if lease.held_by_worker else "free worker"
        error = WorkerLostError(
            f"no {waited} for run {run} within its lease; the worker is presumed lost",
            retryable=True,
        )
        record = self._table.current(job_id, run)
        if record is not None and not self._retried(job_id, run, error):
            self._table.fail(job_id, run, error)
            self._commits.commit(record, event=("lease_expired", error.message))
        self._run_ended(job_id, run)

    # -- resume after a restart ------------------------------------------------------

    async def resume(self, job_ids: list[str]) -> None:
        """Dispatch the runs that were in flight when the registry went, as new runs.

        Waits up to ``resume_timeout_s`` for the worker deployments; then those runs fail
        as ``interrupted`` (retryable: submitting them again is safe).
        """
        self._resuming = list(job_ids)
        deadline = time.monotonic() + self.policy.resume_timeout_s
        while self._resuming:
            if self._workers.backends() is not None:
                for job_id in self._resuming:
                    record = self._table.find(job_id)
                    if record is not None and record.status.active and record.dispatchable:
                        self.requeue(record, Requeue.RESUMED, "the registry restarted")
                self._resuming = []
                return
            if time.monotonic() >= deadline:
                self._interrupt(self._resuming)
                self._resuming = []
                return
            await asyncio.sleep(1.0)

    def _interrupt(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            record = self._table.find(job_id)
            if record is None or not record.status.active:
                continue
            error = JobInterruptedError(
                "the service restarted while the job was in flight; submit it again",
                retryable=True,
            )
            self._table.fail(job_id, record.run, error)
            self._commits.commit(record)
