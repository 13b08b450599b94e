"""Guards on how request bodies arrive: an idle timeout on body reads, and a bound on the
file uploads one client sends at once (used by the security middleware).

A body that stops arriving would otherwise hold its connection and its replica's task
forever; one client that opens many slow uploads would hold as many. The idle timeout
applies only until the body is complete: later ``receive`` calls (a stream waiting for the
client to go) are left alone.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serve_app.api.errors import CarriedError
from serve_app.errors import RateLimitedError, RequestTimeoutError

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

#: Retry-After (seconds) of an upload refused because its client has too many in flight.
UPLOAD_RETRY_AFTER_S = 2


def idle_timeout(receive: Receive, idle_s: float) -> Receive:
    """``receive`` that answers 408 when the body sends nothing for ``idle_s`` seconds."""
    complete = False

    async def timed() -> Message:
        nonlocal complete
        if complete:
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), idle_s)
        except TimeoutError:
            raise CarriedError(
                RequestTimeoutError(
                    f"the request body stopped arriving (nothing for {idle_s:g} s)",
                    idle_timeout_s=idle_s,
                )
            ) from None
        if message.get("type") != "http.request" or not message.get("more_body", False):
            complete = True
        return message

    return timed


class UploadSlots:
    """How many uploads each client has in flight on this replica, bounded per client."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._held: Counter[str] = Counter()

    def in_flight(self, client_id: str) -> int:
        return self._held[client_id]

    def take(self, client_id: str) -> None:
        """Hold one slot (``release`` it when the request ends); 429 with Retry-After
        when the client has none free."""
        if self._held[client_id] >= self.per_client:
            raise RateLimitedError(
                f"too many uploads at once from this client (at most {self.per_client}); "
                f"retry in {UPLOAD_RETRY_AFTER_S} s",
                retry_after_s=UPLOAD_RETRY_AFTER_S,
                max_concurrent_uploads=self.per_client,
            )
        self._held[client_id] += 1

    def release(self, client_id: str) -> None:
        self._held[client_id] -= 1
        if self._held[client_id] <= 0:
            del self._held[client_id]
