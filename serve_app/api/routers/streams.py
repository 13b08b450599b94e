"""A job's live progress: ``GET /api/jobs/{id}/events`` (SSE) and ``WS /ws/jobs/{id}``.

Both streams carry the same JSON as ``GET /api/job-status/{id}``: the current state on
connect, then every change, then one terminal state (completed, failed or cancelled), then
the stream closes. They read the replica's job view, which follows the registry's change
feed (``serve_app.registry.view``); nothing runs inside these requests but reading, so
closing a stream never touches the job. Keep-alives go out while nothing changes: an SSE
comment line, or a WebSocket message ``{"type": "keepalive"}``. With API keys, a job is
404 (WebSocket: 4404) to every key but its owner's and an admin's.

Ray Serve applies ``http_options.request_timeout_s`` to the whole of a streaming response
and of a WebSocket: leave it unset (the default) in the Serve config, or these streams are
cut when it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, WebSocket
from fastapi.responses import Response
from fastapi.sse import ServerSentEvent
from starlette.websockets import WebSocketDisconnect, WebSocketState

from serve_app.api.deps import Services, ServicesDep, ViewerDep, viewer_of
from serve_app.api.job_updates import Update, job_updates
from serve_app.api.route_params import KEEPALIVE_S, JobIdPath, KeepaliveQuery, error_responses
from serve_app.api.security import accepted_subprotocol
from serve_app.api.sse import KEEPALIVE, event_stream, stream_route
from serve_app.contracts.jobs import is_job_id
from serve_app.errors import JobNotFoundError, OrfeasError

#: WebSocket close codes (4000-4999 are the application's own).
WS_NORMAL = 1000
WS_INTERNAL_ERROR = 1011
WS_BAD_JOB_ID = 4422
WS_UNKNOWN_JOB = 4404

router = APIRouter(responses=error_responses(404, 409, 422, 503))


@router.get(
    "/api/jobs/{job_id}/events",
    tags=["jobs"],
    **stream_route("job-status events"),
)
async def job_events(
    job_id: JobIdPath,
    services: ServicesDep,
    viewer: ViewerDep,
    keepalive_s: KeepaliveQuery = KEEPALIVE_S,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """Server-Sent Events: the job's state now, each change, and its end; then it closes."""
    first = await services.jobs.get(job_id, viewer)  # 404 before the stream starts
    if first.status.terminal and _seen_version(last_event_id, first.version):
        return Response(status_code=204)  # a reconnecting EventSource that saw the end
    return event_stream(_sse(job_updates(services.jobs, first, keepalive_s)))


@router.websocket("/ws/jobs/{job_id}")
async def job_socket(websocket: WebSocket, job_id: str, keepalive_s: float = KEEPALIVE_S) -> None:
    """WebSocket: the same events as the SSE stream; closes 1000 after the job ends.

    Closes 4422 for a malformed id and 4404 for an unknown job.
    """
    services: Services = websocket.app.state.services
    await websocket.accept(subprotocol=accepted_subprotocol(websocket.scope))
    if not is_job_id(job_id):
        await websocket.close(WS_BAD_JOB_ID, "job_id must be 32 lowercase hex characters")
        return
    try:
        first = await services.jobs.get(job_id, viewer_of(websocket))
    except JobNotFoundError:
        await websocket.close(WS_UNKNOWN_JOB, "job not found")
        return
    except OrfeasError as exc:
        await websocket.close(WS_INTERNAL_ERROR, exc.code)
        return
    keepalive_s = min(60.0, max(0.5, keepalive_s))
    sender = asyncio.create_task(_send(websocket, job_updates(services.jobs, first, keepalive_s)))
    listener = asyncio.create_task(_until_disconnected(websocket))
    done, _ = await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
    for task in (sender, listener):
        task.cancel()
    await asyncio.gather(sender, listener, return_exceptions=True)
    if listener in done or websocket.client_state is WebSocketState.DISCONNECTED:
        return  # the client left: nothing to close, and the job goes on
    code, reason = WS_NORMAL, "job ended"
    if sender.cancelled() or sender.exception() is not None:
        code, reason = WS_INTERNAL_ERROR, "progress unavailable"
    else:
        reason = f"job {sender.result()}"
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(code, reason)


def _seen_version(last_event_id: str | None, version: int) -> bool:
    """Whether an SSE client's ``Last-Event-ID`` says it already has ``version``."""
    try:
        return last_event_id is not None and int(last_event_id) >= version
    except ValueError:
        return False


async def _sse(updates: AsyncIterator[Update | None]) -> AsyncIterator[ServerSentEvent]:
    """Each update as an event whose id is the job's version; a keep-alive for None."""
    async for update in updates:
        if update is None:
            yield KEEPALIVE
            continue
        version, event = update
        yield ServerSentEvent(raw_data=json.dumps(event, separators=(",", ":")), id=str(version))


async def _send(websocket: WebSocket, updates: AsyncIterator[Update | None]) -> str:
    """Send every update; return the job's final status."""
    status = "ended"
    async for update in updates:
        if update is None:
            await websocket.send_json({"type": "keepalive"})
            continue
        _, event = update
        status = str(event["status"])
        await websocket.send_json(event)
    return status


async def _until_disconnected(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
