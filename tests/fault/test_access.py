"""Access control on the hardened app: API keys, shared rate limits, CORS from config."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.client import Api, photo
from tests.fault.conftest import ADMIN_KEY, CLIENT_KEYS, forwarded_for, keyed_client
from tests.fault.harness import FaultService, replica_names

pytestmark = [
    pytest.mark.fault,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(120),
]


def test_probes_and_docs_are_public_and_the_api_needs_a_key(
    fault_service: FaultService, admin: Api
) -> None:
    admin.wait_ready()
    with httpx.Client(base_url=fault_service.url, timeout=30) as anonymous:
        assert anonymous.get("/health").status_code == 200
        assert anonymous.get("/api/health").status_code == 200
        for method, path in [
            ("GET", "/api/jobs"),
            ("GET", "/api/job-status/0123456789abcdef0123456789abcdef"),
            ("GET", "/download/0123456789abcdef0123456789abcdef/glb"),
            ("POST", "/api/generate-3d"),
        ]:
            response = anonymous.request(method, path)
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["WWW-Authenticate"] == "Bearer"
        files = {"image": ("p.png", photo(size=64, unique=True), "image/png")}
        assert anonymous.post("/api/upload-image", files=files).status_code == 401
        wrong = {"Authorization": "Bearer not-a-key"}
        assert anonymous.get("/api/jobs", headers=wrong).status_code == 401
        assert anonymous.get("/api/jobs", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
        bearer = {"Authorization": f"Bearer {ADMIN_KEY}"}
        assert anonymous.get("/api/jobs", headers=bearer).status_code == 200


async def hammer(service: FaultService, key: str, addresses: list[str], each: int) -> list[int]:
    """``each`` concurrent GET /api/jobs from every address, all with ``key``."""

    async def from_address(address: str) -> list[int]:
        headers = {"X-API-Key": key, **forwarded_for(address)}
        async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30) as client:
            answers = await asyncio.gather(*(client.get("/api/jobs?limit=1") for _ in range(each)))
        for response in answers:
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert response.json()["error"]["code"] == "rate_limited"
        return [r.status_code for r in answers]

    results = await asyncio.gather(*(from_address(a) for a in addresses))
    return [code for codes in results for code in codes]


def hammer_until_limited(
    service: FaultService, key: str, addresses: list[str], each: int, waves: int = 4
) -> tuple[list[int], float]:
    """Waves of :func:`hammer` until one is refused (at most ``waves``); codes and seconds.

    How fast the requests arrive depends on the machine; on a slow one a single wave may
    stay within what the bucket refills meanwhile, so more waves follow.
    """
    started = time.monotonic()
    codes: list[int] = []
    for _ in range(waves):
        codes += asyncio.run(hammer(service, key, addresses, each))
        if 429 in codes:
            break
    return codes, time.monotonic() - started


def test_per_ip_and_per_key_limits_hold_across_ingress_replicas(
    fault_service: FaultService, admin: Api
) -> None:
    admin.wait_ready()
    assert len(replica_names(fault_service.app, "Ingress")) == 2
    security = fault_service.args["security"]
    ip_rate, key_rate = security["per_ip_rate"], security["per_key_rate"]

    # One address, one key: the address's bucket (burst 40) is shared by both replicas.
    codes, seconds = hammer_until_limited(fault_service, CLIENT_KEYS[40], ["127.0.0.240"], 90)
    allowed = ip_rate["burst"] + ip_rate["rate_per_s"] * seconds + 1
    assert set(codes) == {200, 429}
    assert codes.count(200) <= allowed, (codes.count(200), allowed)

    # One key from four addresses, each within its own burst: the key's bucket runs out.
    addresses = [f"127.0.0.{a}" for a in range(241, 245)]
    codes, seconds = hammer_until_limited(fault_service, CLIENT_KEYS[41], addresses, 35)
    allowed = key_rate["burst"] + key_rate["rate_per_s"] * seconds + 1
    assert 429 in codes and codes.count(200) <= allowed, (codes.count(200), allowed)

    # A limited client is served again once it waits.
    time.sleep(3)
    with keyed_client(fault_service, CLIENT_KEYS[40], "127.0.0.240") as client:
        assert client.get("/api/jobs?limit=1").status_code == 200


def test_cors_allows_the_configured_origin_only(fault_service: FaultService, admin: Api) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key",
    }
    allowed = admin.client.options(
        "/api/generate-3d", headers={"Origin": "http://studio.example", **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://studio.example"
    refused = admin.client.options(
        "/api/generate-3d", headers={"Origin": "http://evil.example", **preflight}
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    simple = admin.client.get("/api/jobs", headers={"Origin": "http://studio.example"})
    assert simple.headers["access-control-allow-origin"] == "http://studio.example"
    other = admin.client.get("/api/jobs", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
