"""On the hardened app (API keys, two ingress replicas): a job is its uploader's key's."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.client import Api, photo
from tests.fault.conftest import OWNER_KEYS, POLL_S, keyed_client
from tests.fault.harness import FaultService, wait_for_replicas

pytestmark = [
    pytest.mark.fault,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]


async def ws_close(service: FaultService, job_id: str, key: str) -> tuple[int | None, list[str]]:
    """The close code of ``/ws/jobs/{job_id}`` for ``key``, and the statuses it sent."""
    url = service.url.replace("http://", "ws://", 1) + f"/ws/jobs/{job_id}?api_key={key}"
    statuses = []
    async with asyncio.timeout(30), connect(url) as socket:
        try:
            async for message in socket:
                statuses.append(json.loads(message).get("status"))
        except ConnectionClosed:
            pass
    return socket.close_code, statuses


def test_other_keys_get_404_for_a_job_and_never_see_it_listed(
    fault_service: FaultService, admin: Api
) -> None:
    admin.wait_ready()
    wait_for_replicas(fault_service.app, "Ingress", 2)
    owner_key, other_key = OWNER_KEYS
    with keyed_client(fault_service, owner_key) as o, keyed_client(fault_service, other_key) as x:
        owner, other = Api(o, fault_service, POLL_S), Api(x, fault_service, POLL_S)
        job_id = owner.upload(photo(size=200, unique=True))
        assert owner.generate(job_id, format="stl", quality=1).status_code == 202
        assert owner.wait(job_id, 120)["status"] == "completed"
        theirs = other.upload(photo(size=64, unique=True))

        # Each request may reach either ingress replica; every one says 404.
        for _ in range(3):
            refused = [
                x.get(f"/api/job-status/{job_id}"),
                x.get(f"/download/{job_id}/stl"),
                x.get(f"/api/jobs/{job_id}/events"),
                x.get(f"/api/jobs/{job_id}/logs"),
                x.post(f"/api/jobs/{job_id}/cancel"),
                other.generate(job_id, format="glb"),
            ]
            for response in refused:
                assert response.status_code == 404, (response.request.url, response.text)
                assert response.json()["error"]["code"] == "job_not_found"
        assert asyncio.run(ws_close(fault_service, job_id, other_key)) == (4404, [])
        listed = x.get("/api/jobs", params={"limit": 100}).json()
        assert [j["job_id"] for j in listed["jobs"]] == [theirs] and listed["total"] == 1

        # Its owner and the admin see it, download it and watch it.
        for api in (owner, admin):
            assert api.status(job_id)["status"] == "completed"
            assert api.client.get(f"/download/{job_id}/stl").status_code == 200
        assert asyncio.run(ws_close(fault_service, job_id, owner_key)) == (1000, ["completed"])
        mine = o.get("/api/jobs", params={"limit": 100}).json()
        assert [j["job_id"] for j in mine["jobs"]] == [job_id]
        everyone = {j["job_id"] for j in admin.client.get("/api/jobs?limit=100").json()["jobs"]}
        assert {job_id, theirs} <= everyone


def test_status_is_read_from_each_replicas_view_not_asked_of_the_registry(
    fault_service: FaultService, admin: Api
) -> None:
    from tests.fault.harness import registry_call

    admin.wait_ready()
    job_id = admin.upload(photo(size=64, unique=True))
    admin.status(job_id)
    with httpx.Client(base_url=fault_service.url, timeout=30) as anonymous:
        assert anonymous.get(f"/api/job-status/{job_id}").status_code == 401
    before = registry_call(fault_service.registry, "served_calls")
    for _ in range(30):  # over both replicas, within the key's rate limit
        assert admin.status(job_id)["status"] == "uploaded"
        time.sleep(POLL_S)
    assert admin.client.get("/api/jobs").status_code == 200
    after = registry_call(fault_service.registry, "served_calls")
    for method in ("get", "list_jobs", "sync"):
        assert after.get(method, 0) == before.get(method, 0), (method, before, after)
