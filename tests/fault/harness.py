"""What the fault tests do to the running service: kill its parts, and watch its jobs."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

TERMINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class FaultService:
    """The fault suite's application: URL (with its prefix), storage, config and names."""

    url: str
    storage_root: Path
    args: dict[str, Any]
    app: str
    prefix: str
    registry: str
    admin_key: str


def photo(size: int = 160, unique: bool = True, name: str = "chelsea") -> bytes:
    """A real photo (scikit-image), ``size`` px wide, as PNG; ``unique``: never a cache hit."""
    import skimage.data

    image = Image.fromarray(getattr(skimage.data, name)()[..., :3])
    image = image.resize((size, max(16, round(size * image.height / image.width))))
    rgb = np.asarray(image).copy()
    if unique:
        rng = np.random.default_rng(time.monotonic_ns() % (2**32))
        rgb[:3, :3] = rng.integers(0, 256, size=(3, 3, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def upload(client: httpx.Client, data: bytes) -> str:
    files = {"image": ("photo.png", data, "image/png")}
    response = client.post("/api/upload-image", files=files)
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


def generate(client: httpx.Client, job_id: str, **body: Any) -> httpx.Response:
    return client.post("/api/generate-3d", json={"job_id": job_id, **body})


def status(client: httpx.Client, job_id: str) -> dict[str, Any] | None:
    """The job's status, or None while the service cannot answer (a part is restarting)."""
    try:
        response = client.get(f"/api/job-status/{job_id}")
    except httpx.TransportError:
        return None
    if response.status_code in (502, 503, 504):
        return None
    if response.status_code == 429:  # the tests' own polling hit a rate limit: back off
        time.sleep(float(response.headers.get("Retry-After", "1")))
        return None
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for(
    client: httpx.Client, job_id: str, condition: Any, timeout_s: float, what: str
) -> dict[str, Any]:
    """Poll the job until ``condition(job)``; fail with its last state after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] | None = None
    while True:
        job = status(client, job_id) or job
        if job is not None and condition(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id}: {what} not within {timeout_s} s; last: {job}")
        time.sleep(0.1)


def wait_terminal(client: httpx.Client, job_id: str, timeout_s: float) -> dict[str, Any]:
    return wait_for(client, job_id, lambda j: j["status"] in TERMINAL, timeout_s, "an end")


def wait_ready(client: httpx.Client, timeout_s: float = 120.0) -> None:
    """Until readiness is 200 (registry, store, models, every deployment healthy)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if client.get("/api/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"the service was not ready again within {timeout_s} s")


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
    """Kill the registry actor; with ``restart`` Ray brings it back (max_restarts=-1)."""
    import ray

    ray.kill(ray.get_actor(name, namespace="orfeas"), no_restart=not restart)


def registry_call(name: str, method: str, *args: Any) -> Any:
    import ray

    actor = ray.get_actor(name, namespace="orfeas")
    return ray.get(getattr(actor, method).remote(*args), timeout=60)
