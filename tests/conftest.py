"""Shared pytest set-up for every test directory: cheap, imports nothing heavy at load time.

The real local Ray Serve is session-wide and shared: ``ray_serve`` starts it on first use,
``service`` deploys the application on it at ``/`` (tests/integration, tests/browser),
``text_service`` one with a text-to-image model beside it at ``/text``, and tests/fault
deploys its own hardened application beside them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """Serve's environment (configs/serve.env) before anything imports Ray."""
    from tests.serving import apply_serve_environment

    apply_serve_environment()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root directory (holds models/, configs/, node_modules/)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def ray_serve() -> Iterator[str]:
    """One local Ray with Serve's HTTP proxy on 127.0.0.1; yields the proxy's base URL."""
    from tests.serving import start_ray_serve, stop_ray_serve

    port = start_ray_serve()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_ray_serve()


@pytest.fixture(scope="session")
def service(ray_serve: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The application (the small local graph) on the session's Ray Serve, at ``/``."""
    from tests.client import Service
    from tests.serving import app_args, deploy

    storage_root = tmp_path_factory.mktemp("storage")
    deploy(app_args(storage_root), name="orfeas", route_prefix="/")
    yield Service(url=ray_serve, storage_root=storage_root)


@pytest.fixture(scope="session")
def tiny_hunyuan3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Hunyuan3D-2 model directory (config.yaml + model.fp16.safetensors),
    built once per session with hy3dgen's own classes; readable by local Ray workers."""
    from tests.tiny_hunyuan3d import build_tiny_hunyuan3d

    return build_tiny_hunyuan3d(tmp_path_factory.mktemp("hunyuan3d") / "hunyuan3d-dit-tiny")


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Stable Diffusion pipeline saved as a diffusers model directory
    (tests/tiny_diffusion.py); built once per session, read-only for the tests."""
    from tests.tiny_diffusion import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def text_service(
    ray_serve: str, tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path
) -> Iterator[object]:
    """An application with the tiny text-to-image model (its own registry and storage) on
    the session's Ray Serve at ``/text``, beside the default one; deleted at the end."""
    from ray import serve

    from tests.client import Service
    from tests.serving import TEXT_APP, TEXT_PREFIX, deploy, text_app_args

    storage_root = tmp_path_factory.mktemp("text-storage")
    deploy(text_app_args(storage_root, tiny_sd_dir), name=TEXT_APP, route_prefix=TEXT_PREFIX)
    try:
        yield Service(url=ray_serve + TEXT_PREFIX, storage_root=storage_root)
    finally:
        serve.delete(TEXT_APP)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` on machines without CUDA (torch is imported only if any exist)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in gpu_items:
        item.add_marker(skip)
