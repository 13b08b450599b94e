"""The suites' one HTTP client of a running service, and the real photos they send it."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

TERMINAL = ("completed", "failed", "cancelled")


def photo(
    name: str = "chelsea", fmt: str = "PNG", size: int | None = None, unique: bool = False
) -> bytes:
    """A real photo from scikit-image, ``size`` px wide if given, encoded as ``fmt``.

    ``unique`` changes a few pixels at random, so its bytes are nobody else's (never a
    cache hit).
    """
    import skimage.data

    image = Image.fromarray(np.ascontiguousarray(getattr(skimage.data, name)()[..., :3]))
    if size is not None:
        image = image.resize((size, max(16, round(size * image.height / image.width))))
    rgb = np.asarray(image).copy()
    if unique:
        rng = np.random.default_rng(time.monotonic_ns() % (2**32))
        rgb[:4, :4] = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


@dataclass(frozen=True)
class Service:
    """A running application: its base URL (with its route prefix) and storage root."""

    url: str
    storage_root: Path


class Api:
    """An HTTP client of the service plus the steps most tests share.

    ``poll_s`` paces the waits' status polls (keep it within the service's rate limit).
    """

    def __init__(
        self, client: httpx.Client, service: Service | None = None, poll_s: float = 0.05
    ) -> None:
        self.client = client
        self.service = service
        self.poll_s = poll_s

    @staticmethod
    def photo(name: str = "chelsea", fmt: str = "JPEG") -> bytes:
        return photo(name, fmt)

    @staticmethod
    def unique_photo(size: int | None = None) -> bytes:
        """A real photo whose bytes differ from every other call's (never a cache hit)."""
        return photo(size=size, unique=True)

    def upload(self, data: bytes, filename: str = "photo.png") -> str:
        files = {"image": (filename, data, "application/octet-stream")}
        response = self.client.post("/api/upload-image", files=files)
        assert response.status_code == 200, response.text
        return str(response.json()["job_id"])

    def generate(self, job_id: str, **body: Any) -> httpx.Response:
        return self.client.post("/api/generate-3d", json={"job_id": job_id, **body})

    def status(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/job-status/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def try_status(self, job_id: str) -> dict[str, Any] | None:
        """The job's status, or None while the service cannot answer (a part restarting;
        a rate limit on the test's own polling, after waiting its Retry-After).
        """
        try:
            response = self.client.get(f"/api/job-status/{job_id}")
        except httpx.TransportError:
            return None
        if response.status_code in (502, 503, 504):
            return None
        if response.status_code == 429:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            return None
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_for(
        self,
        job_id: str,
        condition: Callable[[dict[str, Any]], bool],
        timeout_s: float,
        what: str,
    ) -> dict[str, Any]:
        """Poll the job until ``condition(job)``; fail with its last state after ``timeout_s``
        (a bound on the test, not a figure it checks).
        """
        deadline = time.monotonic() + timeout_s
        job: dict[str, Any] | None = None
        while True:
            job = self.try_status(job_id) or job
            if job is not None and condition(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id}: {what} not within {timeout_s} s; last: {job}")
            time.sleep(self.poll_s)

    def wait(self, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
        """Until the job's run ends; its final status."""
        return self.wait_for(job_id, lambda j: j["status"] in TERMINAL, timeout_s, "an end")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until readiness is 200 (registry, store, models, every deployment healthy)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.client.get("/api/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"the service was not ready within {timeout_s} s")
