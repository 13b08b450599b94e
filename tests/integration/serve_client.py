"""A test client of the running service: the HTTP steps most integration tests share."""

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
class Service:
    """The running application: its base URL and storage root."""

    url: str
    storage_root: Path


class Api:
    """An HTTP client of the service plus the steps most tests share."""

    def __init__(self, client: httpx.Client, service: Service) -> None:
        self.client = client
        self.service = service

    @staticmethod
    def photo(name: str = "chelsea", fmt: str = "JPEG") -> bytes:
        """A real photo from scikit-image, encoded as ``fmt``."""
        import skimage.data

        buf = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(buf, format=fmt)
        return buf.getvalue()

    @staticmethod
    def unique_photo() -> bytes:
        """A real photo whose bytes differ from every other call's (never a cache hit)."""
        import skimage.data

        rgb = skimage.data.chelsea().copy()
        rng = np.random.default_rng(time.monotonic_ns() % (2**32))
        rgb[:4, :4] = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        return buf.getvalue()

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

    def wait(self, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
        """Poll until the job's run ends; return its final status."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.status(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} did not finish in {timeout_s} s: {job}")
            time.sleep(0.05)
