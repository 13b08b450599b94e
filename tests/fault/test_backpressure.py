"""A burst beyond the queue: every accepted job completes, every refused one is told so."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from tests.client import Api, photo
from tests.fault.conftest import (
    CLIENT_KEYS,
    MAX_ACTIVE_JOBS,
    MAX_ACTIVE_PER_CLIENT,
    forwarded_for,
)
from tests.fault.harness import FaultService

pytestmark = [
    pytest.mark.fault,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]

#: Six heavy clients send ten jobs each, then 42 light ones send one or two: 120 in all.
HEAVY = {i: 10 for i in range(6)}
LIGHT = {i: (2 if i < 24 else 1) for i in range(6, 48)}


def client_address(i: int) -> str:
    return f"127.0.0.{10 + i}"


async def burst(
    service: FaultService, waves: list[dict[int, int]]
) -> list[tuple[int, str, httpx.Response]]:
    """Each client uploads its images (each unique); then each wave submits all at once."""
    clients = {
        i: httpx.AsyncClient(
            base_url=service.url,
            headers={"X-API-Key": CLIENT_KEYS[i], **forwarded_for(client_address(i))},
            timeout=60,
        )
        for wave in waves
        for i in wave
    }

    async def uploads(i: int, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            files = {"image": ("p.png", photo(size=200, unique=True), "image/png")}
            response = await clients[i].post("/api/upload-image", files=files)
            assert response.status_code == 200, response.text
            ids.append(response.json()["job_id"])
        return ids

    async def submit(i: int, job_id: str) -> tuple[int, str, httpx.Response]:
        body = {"job_id": job_id, "format": "stl", "quality": 1}
        return i, job_id, await clients[i].post("/api/generate-3d", json=body)

    try:
        planned = []
        for wave in waves:
            ids = await asyncio.gather(*(uploads(i, n) for i, n in wave.items()))
            planned.append(dict(zip(wave, ids, strict=True)))
        answers = []
        for wave in planned:
            answers += await asyncio.gather(
                *(submit(i, job_id) for i, ids in wave.items() for job_id in ids)
            )
        return answers
    finally:
        for client in clients.values():
            await client.aclose()


def test_a_burst_of_120_jobs_from_48_clients_loses_no_accepted_job(
    fault_service: FaultService, admin: Api
) -> None:
    admin.wait_ready()
    started = time.monotonic()
    answers = asyncio.run(burst(fault_service, [HEAVY, LIGHT]))
    assert len(answers) == 120

    codes = Counter(r.status_code for _, _, r in answers)
    assert set(codes) <= {202, 429, 503}, codes
    assert codes[202] >= 1 and codes[429] >= 1 and codes[503] >= 1, codes
    for _, _, response in answers:
        if response.status_code != 202:
            assert int(response.headers["Retry-After"]) >= 1
            code = response.json()["error"]["code"]
            assert code == ("rate_limited" if response.status_code == 429 else "overloaded")
    per_client = Counter(i for i, _, r in answers if r.status_code == 202)
    assert max(per_client.values()) <= MAX_ACTIVE_PER_CLIENT + 1  # one may end meanwhile
    accepted = {j for _, j, r in answers if r.status_code == 202}
    refused = {j for _, j, r in answers if r.status_code != 202}

    # Every accepted job completes; every refused one was never queued.
    deadline = time.monotonic() + 180
    while True:
        active = sum(
            admin.client.get("/api/jobs", params={"status": s, "limit": 1}).json()["total"]
            for s in ("queued", "running")
        )
        if active == 0:
            break
        assert time.monotonic() < deadline, f"{active} jobs still active"
        time.sleep(0.5)
    ended: dict[str, str] = {}
    for status in ("completed", "failed", "cancelled", "uploaded"):
        for offset in (0, 100, 200):
            page = admin.client.get(
                "/api/jobs", params={"status": status, "limit": 100, "offset": offset}
            ).json()
            ended.update({j["job_id"]: status for j in page["jobs"]})
    assert {j: ended.get(j) for j in accepted} == dict.fromkeys(accepted, "completed")
    assert {j: ended.get(j) for j in refused} == dict.fromkeys(refused, "uploaded")
    print(
        f"burst: {dict(codes)}; {len(accepted)} accepted jobs completed "
        f"in {time.monotonic() - started:.1f} s (queue bound {MAX_ACTIVE_JOBS})"
    )
