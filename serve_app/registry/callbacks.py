"""Webhooks of the registry: which job and batch ends to report, and the final statuses.

The registry's jobs end in many places (a worker's last beat, a cancel, a failure, a
retry given up); this part needs none of them: it follows the registry's change feed as
an ingress replica does, and when a subscribed job's run (or the last active job of a
subscribed batch) ends, it turns the subscription into a delivery for the outbox
(``serve_app.webhooks``). After a restart, or when the feed says it fell behind, it
checks every subscription against the jobs themselves, so no end is missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from serve_app.contracts.jobs import JobStatus
from serve_app.registry.feeds import ChangeFeed
from serve_app.registry.jobs import JobSnapshot
from serve_app.webhooks.config import WebhookConfig
from serve_app.webhooks.outbox import Outbox
from serve_app.webhooks.records import (
    Delivery,
    DeliveryStore,
    Subscription,
    TargetKind,
)

logger = logging.getLogger(__name__)

#: Longest wait for the next change before looking again.
FOLLOW_WAIT_S = 30.0

#: A job by id, from memory or the journal; None when the registry does not know it.
Lookup = Callable[[str], JobSnapshot | None]


def job_event(job: JobSnapshot) -> dict[str, Any]:
    """The final status of ``job`` as posted: what GET /api/job-status says of its end."""
    request, result = job.request, job.result
    completed = job.status is JobStatus.COMPLETED
    fmt = request.format if request else None
    return {
        "event": f"job.{job.status}",
        "job_id": job.job_id,
        "run": job.run,
        "status": str(job.status),
        "stage": str(job.stage) if job.stage else None,
        "error": job.error,
        "format": fmt,
        "generator": request.generator if request else None,
        "cached": result.cached if result else None,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "status_url": f"/api/job-status/{job.job_id}",
        "download_url": f"/download/{job.job_id}/{fmt}" if completed and fmt else None,
    }


def batch_event(subscription: Subscription, jobs: dict[str, JobSnapshot | None]) -> dict[str, Any]:
    """The final status of a batch (as GET /api/batches/{id} counts it) from its jobs."""
    entries = []
    counts: dict[str, int] = {}
    for member in subscription.members:
        job = jobs.get(member.job_id) if member.job_id else None
        if member.job_id is None:
            status, error = "rejected", member.error
        elif job is None:
            status, error = "expired", None
        else:
            status, error = str(job.status), job.error or (member.error if job.run == 0 else None)
        counts[status] = counts.get(status, 0) + 1
        entries.append({"index": member.index, "job_id": member.job_id, "status": status,
                        "error": error})  # fmt: skip
    completed = counts.get(str(JobStatus.COMPLETED), 0)
    outcome = "completed" if completed == len(entries) else "partial" if completed else "failed"
    return {
        "event": f"batch.{outcome}",
        "batch_id": subscription.target_id,
        "status": outcome,
        "counts": counts,
        "jobs": entries,
        "status_url": f"/api/batches/{subscription.target_id}",
    }


def encode(event: dict[str, Any], limit: int) -> bytes:
    """``event`` as JSON, at most ``limit`` bytes: a longer one keeps its identity and
    outcome only (``truncated``; the status URL has the rest)."""
    body = json.dumps(event, separators=(",", ":")).encode("utf-8")
    if len(body) <= limit:
        return body
    keep = ("event", "job_id", "batch_id", "run", "status", "status_url", "download_url")
    short = {k: event[k] for k in keep if k in event}
    return json.dumps({**short, "truncated": True}, separators=(",", ":")).encode("utf-8")


class Callbacks:
    """The subscriptions of the registry's jobs and batches, fired into ``outbox``."""

    def __init__(self, store: DeliveryStore, outbox: Outbox, lookup: Lookup) -> None:
        self.store = store
        self.outbox = outbox
        self._lookup = lookup
        self._jobs: dict[str, Subscription] = {}
        self._batches: dict[str, Subscription] = {}
        #: Job id → the batches it is a member of.
        self._members: dict[str, set[str]] = {}
        for subscription in store.subscriptions():
            self._index(subscription)

    @property
    def config(self) -> WebhookConfig:
        return self.outbox.config

    def subscribe(self, subscription: Subscription) -> None:
        """Keep ``subscription`` (journaled) and fire it at once if its target has ended."""
        self.store.subscribe(subscription)
        self._index(subscription)
        self._check(subscription)

    def deliveries(self, kind: TargetKind, target_id: str) -> list[Delivery]:
        return self.store.of_target(kind, target_id)

    def forget(self, job_ids: Iterable[str]) -> None:
        """Jobs gone for good (retention): their finished deliveries go too."""
        self.store.forget(TargetKind.JOB, list(job_ids))

    def check_all(self) -> None:
        """Fire every subscription whose target has ended (after a start or a feed reset)."""
        for subscription in [*self._jobs.values(), *self._batches.values()]:
            self._check(subscription)

    async def follow(self, feed: ChangeFeed) -> None:
        """Fire subscriptions as the feed shows their jobs end; forever."""
        epoch: str | None = None
        since = 0
        while True:
            try:
                changes = await feed.read(epoch, since, FOLLOW_WAIT_S)
                if changes.reset:
                    epoch, since = changes.epoch, changes.seq
                    self.check_all()
                    continue
                since = changes.seq
                for change in changes.changes:
                    job = change.snapshot
                    if job is not None and job.status.terminal:
                        self._ended(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("webhook subscriptions: could not follow the change feed")
                await asyncio.sleep(1.0)

    # -- internals -----------------------------------------------------------------

    def _index(self, subscription: Subscription) -> None:
        if subscription.kind is TargetKind.JOB:
            self._jobs[subscription.target_id] = subscription
            return
        self._batches[subscription.target_id] = subscription
        for member in subscription.members:
            if member.job_id is not None:
                self._members.setdefault(member.job_id, set()).add(subscription.target_id)

    def _ended(self, job: JobSnapshot) -> None:
        subscription = self._jobs.get(job.job_id)
        if subscription is not None and job.run >= subscription.run:
            self._fire_job(subscription, job)
        for batch_id in list(self._members.get(job.job_id, ())):
            self._check(self._batches[batch_id])

    def _check(self, subscription: Subscription) -> None:
        if subscription.kind is TargetKind.JOB:
            job = self._lookup(subscription.target_id)
            if job is None:
                self._drop(subscription)  # the job is gone: nothing will end
            elif job.run >= subscription.run and job.status.terminal:
                self._fire_job(subscription, job)
            return
        jobs = {m.job_id: self._lookup(m.job_id) for m in subscription.members if m.job_id}
        if not any(j is not None and j.status.active for j in jobs.values()):
            self._fire(subscription, batch_event(subscription, jobs))

    def _fire_job(self, subscription: Subscription, job: JobSnapshot) -> None:
        self._fire(subscription, job_event(job))

    def _fire(self, subscription: Subscription, event: dict[str, Any]) -> None:
        config = self.config
        body = encode(event, config.max_body_bytes)
        delivery = Delivery.of(subscription, event["event"], body, time.time(), config.retry_for_s)
        try:
            self.store.fire(subscription, delivery)
        except Exception:
            logger.exception("could not journal the webhook of %s", subscription.target_id)
            return
        self._unindex(subscription)
        self.outbox.post(delivery)

    def _drop(self, subscription: Subscription) -> None:
        self.store.forget(subscription.kind, [subscription.target_id])
        self._unindex(subscription)

    def _unindex(self, subscription: Subscription) -> None:
        if subscription.kind is TargetKind.JOB:
            self._jobs.pop(subscription.target_id, None)
            return
        self._batches.pop(subscription.target_id, None)
        for member in subscription.members:
            batches = self._members.get(member.job_id or "")
            if batches is not None:
                batches.discard(subscription.target_id)
                if not batches:
                    del self._members[member.job_id or ""]
