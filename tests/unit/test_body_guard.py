"""The body guards on their own: the idle timeout on body reads and the upload slots."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from serve_app.api.body_guard import UploadSlots, idle_timeout
from serve_app.api.errors import CarriedError
from serve_app.errors import RateLimitedError


def test_a_body_that_stops_is_a_408_and_a_finished_one_is_left_alone() -> None:
    async def scenario() -> None:
        parts: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        receive = idle_timeout(parts.get, idle_s=0.05)
        await parts.put({"type": "http.request", "body": b"abc", "more_body": True})
        assert (await receive())["body"] == b"abc"
        with pytest.raises(CarriedError) as stalled:
            await receive()  # nothing more comes
        assert stalled.value.error.status_code == 408
        assert stalled.value.error.code == "request_timeout"

        done: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        receive = idle_timeout(done.get, idle_s=0.05)
        await done.put({"type": "http.request", "body": b"all", "more_body": False})
        assert (await receive())["body"] == b"all"
        waiting = asyncio.create_task(receive())  # a stream waiting for the client to go
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await done.put({"type": "http.disconnect"})
        assert (await waiting)["type"] == "http.disconnect"

    asyncio.run(scenario())


def test_upload_slots_are_bounded_per_client_and_come_back() -> None:
    slots = UploadSlots(per_client=2)
    slots.take("key:a")
    slots.take("key:a")
    slots.take("key:b")  # another client has its own
    with pytest.raises(RateLimitedError) as refused:
        slots.take("key:a")
    assert refused.value.headers()["Retry-After"] == "2"
    assert refused.value.details["max_concurrent_uploads"] == 2
    slots.release("key:a")
    slots.take("key:a")
    assert slots.in_flight("key:a") == 2
    for _ in range(2):
        slots.release("key:a")
    assert slots.in_flight("key:a") == 0
