"""Server-Sent Event streams: FastAPI's ``EventSourceResponse`` carrying our events.

Every stream starts by asking the client to wait ``RETRY_MS`` before it reconnects; an
event carries its id (a reconnecting ``EventSource`` sends it back as ``Last-Event-ID``)
and its JSON as ``data``; a keep-alive is a comment line.

A route returns ``event_stream(...)`` and is declared with ``stream_route(...)``, whose
``response_class`` is ``StreamingResponse``: FastAPI takes ``response_class=
EventSourceResponse`` for a generator route, and ours are none, as each answers 404 (or
204) before its stream starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent, format_sse_event

#: How long a disconnected ``EventSource`` waits before it reconnects.
RETRY_MS = 3000
KEEPALIVE = ServerSentEvent(comment="keep-alive")


def stream_route(description: str) -> dict[str, Any]:
    """The route options of an event stream: what it answers, for the OpenAPI document."""
    return {
        "response_class": StreamingResponse,
        "responses": {200: {"content": {"text/event-stream": {}}, "description": description}},
    }


def event_stream(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    """The response streaming ``events`` (each with its JSON as ``raw_data``, or a comment),
    unbuffered by proxies."""
    return EventSourceResponse(
        _encoded(events), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


async def _encoded(events: AsyncIterator[ServerSentEvent]) -> AsyncIterator[bytes]:
    yield format_sse_event(retry=RETRY_MS)
    async for event in events:
        yield format_sse_event(
            data_str=event.raw_data, id=event.id, retry=event.retry, comment=event.comment
        )
