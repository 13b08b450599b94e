"""What the worker deployments share: the heartbeat to the registry, and CPU priority."""

from __future__ import annotations

import logging
import os
import threading
from types import TracebackType
from typing import Any

import ray
from ray.actor import ActorHandle

from serve_app.contracts.runs import ImageTicket, JobTicket
from serve_app.contracts.stages import Stage
from serve_app.errors import OrfeasError
from serve_app.pipeline.types import CancelToken
from serve_app.registry.leases import Beat

logger = logging.getLogger(__name__)


def lower_priority(niceness: int) -> None:
    """Add ``niceness`` to this process's (a replica's) Unix niceness; 0 leaves it."""
    if niceness > 0:
        os.nice(niceness)


class RunReporter:
    """Sends ``(stage, fraction)`` of one run to the registry every ``interval_s``, or as
    often as the registry's last answer asked (less often while it holds many leases).

    Stages call ``on_progress``, which only records the latest value; a background
    thread sends it, so a slow registry never slows the model. A new stage is sent at
    once rather than at the next interval, and every stage is sent in order even when
    it lasts less than a beat, so watchers see each one and the registry can time it.
    When the registry answers
    that the run should stop (cancelled, or no longer the job's run), ``cancel`` is set
    and the stages raise at their next check. Use as a context manager around the work:
    entering sends the first beat (the job is running from then on); the run's result,
    not a last beat, ends it. An error of the service's that leaves the block names the
    stage it came from (``stage`` in its details), so the job's error says where it failed.
    """

    def __init__(
        self,
        registry: ActorHandle,
        ticket: JobTicket | ImageTicket,
        stage: Stage,
        interval_s: float = 0.25,
    ) -> None:
        self.cancel = CancelToken()
        self._registry = registry
        self._ticket = ticket
        self._interval_s = interval_s
        self._latest: tuple[Stage, float] = (stage, 0.0)
        self._new_stages: list[tuple[Stage, float]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"heartbeat-{ticket.job_id[:8]}", daemon=True
        )

    def on_progress(self, stage: Stage, fraction: float) -> None:
        with self._lock:
            if stage != self._latest[0]:
                self._new_stages.append((stage, fraction))
                self._wake.set()
            self._latest = (stage, fraction)

    def __enter__(self) -> RunReporter:
        self._beat(*self._latest)
        self.cancel.raise_if_cancelled()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        if exc is None:
            self._flush()  # the last stages of a fast run, so the registry saw them all
        elif isinstance(exc, OrfeasError):
            exc.details.setdefault("stage", str(self._latest[0]))

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._flush()

    def _flush(self) -> None:
        """Send the stages begun since the last beat, in order, then the latest report."""
        with self._lock:
            beats, self._new_stages = self._new_stages, []
            if not beats or beats[-1] != self._latest:
                beats.append(self._latest)
        for stage, fraction in beats:
            self._beat(stage, fraction)

    def _beat(self, stage: Stage, fraction: float) -> None:
        ticket = self._ticket
        try:
            ref: Any = self._registry.heartbeat.remote(ticket.job_id, ticket.run, stage, fraction)
            beat: Beat = ray.get(ref, timeout=max(5.0, 8 * self._interval_s))
        except Exception as exc:  # a missed beat is not fatal; the next one may pass
            logger.warning("heartbeat for job %s failed: %s", ticket.job_id, exc)
            return
        self._interval_s = beat.interval_s
        if beat.stop:
            self.cancel.cancel()
