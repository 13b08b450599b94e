"""What the fault tests do to the running service: kill its parts, and ask its registry."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tests.client import Service


@dataclass(frozen=True)
class FaultService(Service):
    """The fault suite's application: its config and the names of its parts."""

    args: dict[str, Any]
    app: str
    prefix: str
    registry: str
    admin_key: str


def replica_names(app: str, deployment: str) -> list[str]:
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(prefix)
    ]


def kill_replica(app: str, deployment: str) -> str:
    """Kill one replica of ``deployment`` (no restart: Serve starts a replacement)."""
    import ray

    names = replica_names(app, deployment)
    assert names, f"no replica of {app}/{deployment} found"
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return names[0]


def kill_registry(name: str, restart: bool) -> None:
    """Kill the registry actor; with ``restart`` Ray brings it back (max_restarts=-1), and
    this returns once the new one answers (``ray.kill`` itself returns before the old dies)."""
    import ray

    actor = ray.get_actor(name, namespace="orfeas")
    if not restart:
        ray.kill(actor, no_restart=True)
        return
    before = _pid(actor)
    ray.kill(actor, no_restart=False)
    deadline = time.monotonic() + 60
    while True:
        try:
            if _pid(actor) != before:
                return
        except ray.exceptions.RayError:
            pass
        assert time.monotonic() < deadline, f"the registry {name} did not come back"
        time.sleep(0.2)


def _pid(actor: Any) -> int:
    import os

    import ray

    return ray.get(actor.__ray_call__.remote(lambda _: os.getpid()), timeout=60)


def registry_call(name: str, method: str, *args: Any) -> Any:
    import ray

    actor = ray.get_actor(name, namespace="orfeas")
    return ray.get(getattr(actor, method).remote(*args), timeout=60)


def wait_for_registry(name: str, timeout_s: float = 60.0) -> None:
    """Until the (restarting) registry actor answers a call."""
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            registry_call(name, "ping")
            return
        except ray.exceptions.RayError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_for_replicas(app: str, deployment: str, count: int, timeout_s: float = 120.0) -> None:
    """Until ``deployment`` has ``count`` replicas again (Serve replaces a killed one)."""
    deadline = time.monotonic() + timeout_s
    while len(replica_names(app, deployment)) != count:
        assert time.monotonic() < deadline, f"{app}/{deployment} never had {count} replicas"
        time.sleep(0.2)


__all__ = [
    "FaultService",
    "kill_registry",
    "kill_replica",
    "registry_call",
    "wait_for_registry",
    "wait_for_replicas",
]
