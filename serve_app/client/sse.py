"""A Server-Sent Events decoder: lines in, events out (the WHATWG ``text/event-stream`` rules).

The service's streams use ``retry``, ``id`` and one-line ``data`` fields and comment lines
for keep-alives; the decoder also takes multi-line data and named events. Reconnecting
with ``Last-Event-ID`` is the watcher's job (``serve_app.client.watch``).

It is fed lines, not a response, so the sync and async clients share it, and a watcher
seeds ``last_id`` when it reconnects; httpx-sse's public API owns the request instead
(``connect_sse``), and its decoder class is private.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Feed it the stream's lines (without their line breaks), one at a time."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        #: The last event id the stream set (kept across events, as the spec says).
        self.last_id: str | None = None
        #: The reconnection delay the stream asked for, in milliseconds.
        self.retry_ms: int | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """The event that ``line`` completes (an empty line ends one), else None."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the service's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(data="\n".join(data), event=event or "message", id=self.last_id)
