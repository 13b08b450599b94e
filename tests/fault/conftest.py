"""The fault suite's own application, hardened and with short leases, beside the main one.

It runs on the session's Ray Serve (tests/conftest.py) as application ``orfeas-fault`` at
``/fault``, with its own registry, storage root and policies: API keys, rate limits, a
small bounded queue and per-client shares, so that faults and overload can be caused on
purpose without disturbing the other suites' application.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serve_app.api.security import hash_key
from tests.client import Api
from tests.fault.harness import FaultService
from tests.serving import app_args, deploy

APP = "orfeas-fault"
PREFIX = "/fault"
REGISTRY = "job_registry_fault"
#: One API key per simulated client of the burst, plus an admin key for the tests' own
#: calls (it sees every client's jobs).
CLIENT_KEYS = [f"fault-client-key-{i:02d}" for i in range(48)]
ADMIN_KEY = "fault-admin-key"
#: Two keys no other test uses, for the ownership tests (each sees only its own jobs).
OWNER_KEYS = ("fault-owner-key-a", "fault-owner-key-b")
#: The key of the tests that pace request bodies (their uploads are nobody else's jobs).
PACE_KEY = "fault-pace-key-0001"
MAX_ACTIVE_JOBS = 16
MAX_ACTIVE_PER_CLIENT = 2
BODY_IDLE_TIMEOUT_S = 5.0
MAX_CONCURRENT_UPLOADS = 2
#: The tests' own polls: within ``per_key_rate`` (10 per second), so they are never refused.
POLL_S = 0.1


def fault_args(storage_root: Path) -> dict[str, Any]:
    args = app_args(storage_root)
    small = {"num_replicas": 1, "num_cpus": 0.25}
    # Two ingress replicas: rate limits must hold across them.
    args["ingress"] = {
        "num_replicas": 2,
        "num_cpus": 0.25,
        "max_ongoing_requests": 300,
        "max_queued_requests": 300,
    }
    args["background_removal"] = {
        **small,
        "max_ongoing_requests": 2,
        "max_queued_requests": MAX_ACTIVE_JOBS,
        "health_check_period_s": 2,
        "graceful_shutdown_timeout_s": 2,
    }
    args["shape_texture"] = {
        **small,
        "max_ongoing_requests": 1,
        "max_queued_requests": MAX_ACTIVE_JOBS,
        "health_check_period_s": 2,
        "graceful_shutdown_timeout_s": 2,
    }
    args["registry"] = {
        "name": REGISTRY,
        "lease_s": 4.0,
        "watchdog_interval_s": 0.5,
        "queue_timeout_s": 120.0,
        "max_retries": 1,
        "max_active_jobs": MAX_ACTIVE_JOBS,
        "max_active_per_client": MAX_ACTIVE_PER_CLIENT,
        "retry_after_s": 2,
        "resume_timeout_s": 90.0,
    }
    args["security"] = {
        "api_key_hashes": [hash_key(k) for k in [*CLIENT_KEYS, *OWNER_KEYS, PACE_KEY]],
        "admin_key_hashes": [hash_key(ADMIN_KEY)],
        "cors_origins": ["http://studio.example"],
        "per_key_rate": {"rate_per_s": 10, "burst": 60},
        "per_ip_rate": {"rate_per_s": 20, "burst": 40},
        # HAProxy, on this machine, is the hop in front of the ingress replicas; the
        # tests' clients play the load balancer before it and name themselves in
        # X-Forwarded-For (see ``forwarded_for``).
        "trusted_proxies": ["127.0.0.1"],
        # Short, so a stalled body is answered within the tests' bounds.
        "body_idle_timeout_s": BODY_IDLE_TIMEOUT_S,
        "max_concurrent_uploads": MAX_CONCURRENT_UPLOADS,
    }
    return args


@pytest.fixture(scope="package")
def fault_service(
    ray_serve: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultService]:
    from ray import serve

    storage_root = tmp_path_factory.mktemp("fault-storage")
    args = fault_args(storage_root)
    deploy(args, name=APP, route_prefix=PREFIX)
    service = FaultService(
        url=ray_serve + PREFIX,
        storage_root=storage_root,
        args=args,
        app=APP,
        prefix=PREFIX,
        registry=REGISTRY,
        admin_key=ADMIN_KEY,
    )
    try:
        yield service
    finally:
        serve.delete(APP)


def forwarded_for(address: str | None) -> dict[str, str]:
    """The header a load balancer in front of HAProxy adds for a client at ``address``."""
    return {"X-Forwarded-For": address} if address else {}


def keyed_client(service: FaultService, key: str, address: str | None = None) -> httpx.Client:
    """A client of the fault app sending ``key``, as client ``address`` if given."""
    return httpx.Client(
        base_url=service.url,
        headers={"Authorization": f"Bearer {key}", **forwarded_for(address)},
        timeout=60.0,
    )


@pytest.fixture
def admin(fault_service: FaultService) -> Iterator[Api]:
    """A client of the fault app with the admin key (on 127.0.0.1): it sees every job."""
    with keyed_client(fault_service, ADMIN_KEY) as client:
        yield Api(client, fault_service, POLL_S)


@pytest.fixture
def clients(fault_service: FaultService) -> Iterator[list[Api]]:
    """Four clients with keys of their own (each has its own share of the queue)."""
    opened = [keyed_client(fault_service, key) for key in CLIENT_KEYS[-4:]]
    try:
        yield [Api(client, fault_service, POLL_S) for client in opened]
    finally:
        for client in opened:
            client.close()
