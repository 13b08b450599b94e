"""Unit tests never start Ray: any ``ray.init`` (direct, or from Serve or auto-init) raises.

Where Ray is not installed (a bare CUDA machine running ``bench/gpu.py``), there is nothing
to forbid.
"""

from __future__ import annotations

import pytest


class RayInitInUnitTest(RuntimeError):
    """Raised instead of starting Ray; tests that need Ray belong in tests/integration."""


@pytest.fixture(autouse=True)
def _forbid_ray_init(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import ray
        import ray._private.worker
    except ImportError:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise RayInitInUnitTest(
            "unit tests must not start Ray; move this test to tests/integration"
        )

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray._private.worker, "init", refuse)
