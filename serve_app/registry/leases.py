"""Leases on active runs: each dispatched run holds one until it ends, renewed by its worker.

A run is dispatched with a lease as long as the longest wait for a free worker
(``queue_timeout_s``). The worker's first heartbeat shortens it to ``lease_s`` and every
later one renews it; when a stage hands the run on to the next deployment, the lease goes
back to the queue timeout. A lease that expires means its worker is gone or stuck: the
registry's watchdog retries the run or fails it. Times are ``time.monotonic()`` seconds.

Workers beat every ``heartbeat_interval_s`` while few leases are held by workers; with more
than ``heartbeat_budget_per_s × heartbeat_interval_s`` of them, each is asked to beat every
``held leases / heartbeat_budget_per_s`` s instead (the registry's answer says when), so that
all of them together send about the budget, and a lease lasts at least four such beats.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Beat:
    """The registry's answer to a heartbeat: whether the worker stops (the run was cancelled,
    or is no longer the job's), and how long it waits before its next beat."""

    stop: bool
    interval_s: float


@dataclass
class Lease:
    """The claim of run ``run`` of ``job_id`` on the service's workers."""

    job_id: str
    run: int
    deadline: float
    #: True once a worker has reported: the lease then lasts ``lease_s`` per beat.
    held_by_worker: bool = False


class LeaseBook:
    """The leases of every active run, by job id (a job has at most one active run)."""

    def __init__(self) -> None:
        self._leases: dict[str, Lease] = {}
        #: How many leases a worker holds (those of runs that beat, not of queued ones).
        self.held = 0

    def __len__(self) -> int:
        return len(self._leases)

    def grant(self, job_id: str, run: int, wait_s: float, now: float) -> Lease:
        """A lease for a run just dispatched; it replaces the job's previous one."""
        self.release(job_id)
        lease = Lease(job_id=job_id, run=run, deadline=now + wait_s)
        self._leases[job_id] = lease
        return lease

    def renew(self, job_id: str, run: int, lease_s: float, now: float) -> bool:
        """A heartbeat of ``run``: extend its lease; False if it holds none (stale)."""
        lease = self._leases.get(job_id)
        if lease is None or lease.run != run:
            return False
        if not lease.held_by_worker:
            lease.held_by_worker = True
            self.held += 1
        lease.deadline = now + lease_s
        return True

    def hand_over(self, job_id: str, run: int, wait_s: float, now: float) -> None:
        """A stage finished and passed the run on: it waits for the next worker again."""
        lease = self._leases.get(job_id)
        if lease is not None and lease.run == run:
            if lease.held_by_worker:
                lease.held_by_worker = False
                self.held -= 1
            lease.deadline = now + wait_s

    def release(self, job_id: str, run: int | None = None) -> Lease | None:
        """Drop the job's lease (of ``run`` only, when given); return it."""
        lease = self._leases.get(job_id)
        if lease is None or (run is not None and lease.run != run):
            return None
        del self._leases[job_id]
        self.held -= lease.held_by_worker
        return lease

    def postpone(self, seconds: float) -> None:
        """Move every deadline ``seconds`` later: time in which the registry could not hear
        heartbeats (its event loop or the whole machine stalled) is not held against workers.
        """
        for lease in self._leases.values():
            lease.deadline += seconds

    def expired(self, now: float) -> list[Lease]:
        """Leases past their deadline, oldest deadline first."""
        return sorted(
            (lease for lease in self._leases.values() if lease.deadline <= now),
            key=lambda lease: lease.deadline,
        )

    def leases(self) -> list[Lease]:
        return list(self._leases.values())
