"""Live routes: cancel, progress streams (WebSocket and SSE), the job log, and ``/metrics``.

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
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, WebSocket
from fastapi.responses import Response, StreamingResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from serve_app.api import responses
from serve_app.api.deps import Services, ServicesDep, ViewerDep, viewer_of
from serve_app.api.routes import JobIdPath
from serve_app.api.watch import job_updates
from serve_app.contracts.jobs import is_job_id
from serve_app.errors import JobNotFoundError, OrfeasError
from serve_app.metrics import render_prometheus
from serve_app.schemas.jobs import ErrorResponse, JobLogResponse, JobStatusResponse

#: Seconds of silence after which a stream sends a keep-alive.
KEEPALIVE_S = 10.0

#: WebSocket close codes (4000-4999 are the application's own).
WS_NORMAL = 1000
WS_INTERNAL_ERROR = 1011
WS_BAD_JOB_ID = 4422
WS_UNKNOWN_JOB = 4404

KeepaliveQuery = Annotated[
    float, Query(ge=0.5, le=60.0, description="seconds of silence before a keep-alive")
]

_errors = {code: {"model": ErrorResponse} for code in (404, 409, 422, 503)}
router = APIRouter(responses=_errors)  # type: ignore[arg-type]


@router.post("/api/jobs/{job_id}/cancel", tags=["jobs"])
async def cancel_job(
    job_id: JobIdPath, services: ServicesDep, viewer: ViewerDep
) -> JobStatusResponse:
    """Cancel a queued or running job; answers once it has stopped (status ``cancelled``).

    404 unknown id, 409 when the job is not queued or running (finished, or never started).
    """
    await services.jobs.get(job_id, viewer)
    job = await services.registry.cancel(job_id)
    services.jobs.apply(job)
    return responses.job_status(job)


@router.get(
    "/api/jobs/{job_id}/events",
    tags=["jobs"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "job-status events"}},
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
    return StreamingResponse(
        _sse(job_updates(services.jobs, first, keepalive_s)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.websocket("/ws/jobs/{job_id}")
async def job_socket(websocket: WebSocket, job_id: str, keepalive_s: float = KEEPALIVE_S) -> None:
    """WebSocket: the same events as the SSE stream; closes 1000 after the job ends.

    Closes 4422 for a malformed id and 4404 for an unknown job.
    """
    services: Services = websocket.app.state.services
    await websocket.accept()
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


@router.get("/api/jobs/{job_id}/logs", tags=["jobs"])
async def job_logs(job_id: JobIdPath, services: ServicesDep, viewer: ViewerDep) -> JobLogResponse:
    """The job's recent events (queued, stages with their durations, its end), oldest first."""
    await services.jobs.get(job_id, viewer)
    return responses.job_log(await services.registry.job_log(job_id))


@router.get(
    "/metrics",
    tags=["health"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(services: ServicesDep) -> Response:
    """Service-wide figures in Prometheus text format, the same from every replica."""
    body, content_type = render_prometheus(await services.registry.metrics())
    return Response(body, media_type=content_type)


def _seen_version(last_event_id: str | None, version: int) -> bool:
    """Whether an SSE client's ``Last-Event-ID`` says it already has ``version``."""
    try:
        return last_event_id is not None and int(last_event_id) >= version
    except ValueError:
        return False


async def _sse(updates: AsyncIterator[tuple[int, dict[str, Any]] | None]) -> AsyncIterator[bytes]:
    yield b"retry: 3000\n\n"
    async for update in updates:
        if update is None:
            yield b": keep-alive\n\n"
            continue
        version, event = update
        yield f"id: {version}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


async def _send(
    websocket: WebSocket, updates: AsyncIterator[tuple[int, dict[str, Any]] | None]
) -> str:
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
