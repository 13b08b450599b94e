"""A job's live updates for one stream, from this replica's job view (no registry call).

A stream starts from the snapshot it read, then gets each newer version the view takes
from the registry's change feed, once and in order, up to the first terminal state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from serve_app.api import responses
from serve_app.registry.jobs import JobSnapshot
from serve_app.registry.view import JobView

#: (version, event): one change of a job, as its status body.
Update = tuple[int, dict[str, Any]]


def event_payload(job: JobSnapshot) -> dict[str, Any]:
    """One stream event: exactly the body of ``GET /api/job-status/{id}``."""
    return responses.job_status(job).model_dump(mode="json")


async def job_updates(
    view: JobView, first: JobSnapshot, keepalive_s: float
) -> AsyncIterator[Update | None]:
    """(version, event) for ``first`` and every later change, up to and including the
    first terminal state; None after ``keepalive_s`` without a change. Ends early if the
    registry forgets the job.
    """
    seen = first.version
    yield seen, event_payload(first)
    if first.status.terminal:
        return
    with view.listen(first.job_id) as queue:
        held = view.peek(first.job_id)  # anything newer that arrived before we listened
        if held is not None and held.version > seen:
            queue.put_nowait(held)
        while True:
            try:
                job = await asyncio.wait_for(queue.get(), keepalive_s)
            except TimeoutError:
                yield None
                continue
            if job is None:
                return
            if job.version <= seen:
                continue
            seen = job.version
            yield seen, event_payload(job)
            if job.status.terminal:
                return
