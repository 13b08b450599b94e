"""The one path a change of a job takes: journaled first, then published on the change feed.

Every part of the registry that changes a job's record (the actor's requests, the
supervisor, variants) ends the change with ``commit(record, change)``: the journal has the
record before any reader of the feed sees it, so what a client was shown survives a
restart. Only a worker's progress is published without a journal write (a heartbeat
every fraction of a second); the run's end journals its last state.
"""

from __future__ import annotations

from enum import StrEnum

from serve_app.registry.jobs import JobRecord
from serve_app.registry.journal import Ledger
from serve_app.registry.monitor import JobMonitor


class Change(StrEnum):
    """What changed in a job, which says how it is journaled and published."""

    #: A new job with its upload stored: counted and logged as an upload.
    UPLOADED = "uploaded"
    #: A text run's picture was made: now the job's input, logged with its parameters.
    IMAGE_MADE = "image_made"
    #: Any other change of state: a claim, a cancel, a retry, an end, a variant.
    STATE = "state"
    #: A worker's progress: published, not journaled.
    PROGRESS = "progress"


class Commits:
    """Journals a job's change, then publishes it (feed, log, metrics) through the monitor."""

    def __init__(self, ledger: Ledger, monitor: JobMonitor) -> None:
        self._ledger = ledger
        self._monitor = monitor

    def commit(
        self,
        record: JobRecord,
        change: Change = Change.STATE,
        event: tuple[str, str] | None = None,
    ) -> None:
        """Journal ``record`` (unless ``change`` is progress), log ``event`` (name and
        message) if given, and publish the change."""
        if change is not Change.PROGRESS:
            self._ledger.save(record)
        if event is not None:
            self._monitor.log(record, *event)
        if change is Change.UPLOADED:
            self._monitor.uploaded(record)
        elif change is Change.IMAGE_MADE:
            self._monitor.image_made(record)
        else:
            self._monitor.changed(record)
