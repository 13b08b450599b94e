"""The service's API and registry in this process, without Ray: a real ``JobRegistry``
(journal, feed, supervisor) behind a real ``JobView``, served by the real FastAPI app.

There are no generation deployments, so a run completes only from the content-addressed
cache (``complete_from_cache`` stores a mesh under the run's cache key first); any other
run fails with ``model_unavailable`` — unless a test attaches objects of its own in their
place (``attach``, ``LocalDeployment``). The MeshTools deployment's work (variants,
previews) runs here in threads, as ``InProcessMeshTools``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ray.actor import ActorHandle

from serve_app.api.app import create_api
from serve_app.api.deps import Services
from serve_app.config import AppConfig
from serve_app.contracts.params import GenerationParams
from serve_app.contracts.variants import VariantBuilt, VariantOrder
from serve_app.meshtools.isolated import IsolatedWorker
from serve_app.meshtools.variants import PreviewOrder
from serve_app.metrics import MetricsSink
from serve_app.pipeline.types import TexturedMesh
from serve_app.registry.actor import JobRegistry
from serve_app.registry.cache import cache_key
from serve_app.registry.client import RegistryClient
from serve_app.registry.view import JobView
from serve_app.registry.workers import Backends
from serve_app.storage import ArtifactStore
from serve_app.work.meshtools import make_variant, render_to_store
from tests.support import encode, photo

T = TypeVar("T")
GENERATOR_VERSION = "inflate-test"


class LocalActor:
    """An actor handle's calls (``actor.method.remote(*args)``, awaited) made on a
    ``JobRegistry`` in this process, on the caller's event loop."""

    def __init__(self, registry: JobRegistry) -> None:
        self.registry = registry

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.registry, name)

        class Method:
            @staticmethod
            def remote(*args: Any, **kwargs: Any) -> Awaitable[Any]:
                return cast(Awaitable[Any], method(*args, **kwargs))

        return Method


def in_process_client(registry: JobRegistry) -> RegistryClient:
    """The ingress's ``RegistryClient`` over a ``JobRegistry`` in this process."""
    return RegistryClient(cast(ActorHandle, LocalActor(registry)))


class InProcessMeshTools:
    """What the MeshTools deployment does (``serve_app.work.meshtools``), in threads of
    this process; counts the variants and previews it was asked for."""

    def __init__(self, config: AppConfig) -> None:
        self.store = ArtifactStore(config.storage.root)
        self.limits = config.mesh_tools
        self.child = IsolatedWorker("test-mesh-variants")
        self.variant_calls = 0
        self.render_calls = 0

    async def make_variant(self, order: VariantOrder) -> VariantBuilt:
        self.variant_calls += 1
        limits = self.limits
        return await asyncio.to_thread(
            self.child.call, make_variant, self.store, order, limits, timeout_s=limits.timeout_s
        )

    def names(self) -> dict[str, str] | None:
        return None

    async def render(self, order: PreviewOrder) -> None:
        self.render_calls += 1
        await asyncio.to_thread(render_to_store, self.store, order)


class ManualClock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def app_config(root: Path, **args: Any) -> AppConfig:
    """A config for the in-process service under ``root``; ``args`` override sections."""
    base: dict[str, Any] = {"storage": {"root": str(root)}, **args}
    return AppConfig.model_validate(base)


@dataclass
class InProcessService:
    http: TestClient
    registry: JobRegistry
    view: JobView
    config: AppConfig
    mesh_tools: InProcessMeshTools

    def run(self, coroutine: Callable[[], Awaitable[T]]) -> T:
        """Run ``coroutine()`` on the service's event loop."""
        assert self.http.portal is not None
        return self.http.portal.call(coroutine)

    def calls(self) -> dict[str, int]:
        return self.run(self.registry.served_calls)

    def upload(self, headers: dict[str, str] | None = None, name: str = "chelsea") -> str:
        files = {"image": ("p.png", encode(photo(name)[:120, :160]), "image/png")}
        response = self.http.post("/api/upload-image", files=files, headers=headers)
        assert response.status_code == 200, response.text
        return str(response.json()["job_id"])

    def complete_from_cache(
        self, job_id: str, quality: int = 5, mesh: TexturedMesh | None = None
    ) -> None:
        """Store ``mesh`` (a tetrahedron by default) under the key a run of ``job_id`` at
        ``quality`` will look up."""
        self.run(self._seed_cache(job_id, quality, mesh or tetrahedron()))

    def seed_cache(self, image: bytes, quality: int, mesh: TexturedMesh | None = None) -> None:
        """Store ``mesh`` under the key a run of a job with the photo ``image`` at
        ``quality`` will look up (before the job exists)."""
        upload_sha = hashlib.sha256(image).hexdigest()

        async def seed() -> None:
            await self.registry.report_generator("inflate", GENERATOR_VERSION)
            key = cache_key(
                upload_sha,
                GenerationParams(quality=quality),
                self.config.pipeline.background_model,
                "inflate",
                GENERATOR_VERSION,
                texture=self.config.pipeline.texture_version,
            )
            ArtifactStore(self.config.storage.root).put_mesh(
                key, (mesh or tetrahedron()).to_bytes()
            )

        self.run(seed)

    def completed_job(
        self,
        mesh: TexturedMesh | None = None,
        headers: dict[str, str] | None = None,
        name: str = "chelsea",
    ) -> str:
        """A new job, completed from the cache with ``mesh``; its id."""
        job_id = self.upload(headers, name)
        self.complete_from_cache(job_id, quality=2, mesh=mesh)
        answer = self.http.post(
            "/api/generate-3d", json={"job_id": job_id, "quality": 2}, headers=headers
        )
        assert answer.status_code == 202, answer.text
        self.wait_view(lambda: getattr(self.view.peek(job_id), "status", None) == "completed")
        return job_id

    def _seed_cache(
        self, job_id: str, quality: int, mesh: TexturedMesh
    ) -> Callable[[], Awaitable[None]]:
        async def seed() -> None:
            await self.registry.report_generator("inflate", GENERATOR_VERSION)
            store = ArtifactStore(self.config.storage.root)
            upload = store.job_upload(job_id)
            assert upload is not None
            key = cache_key(
                upload.sha256,
                GenerationParams(quality=quality),
                self.config.pipeline.background_model,
                "inflate",
                GENERATOR_VERSION,
                texture=self.config.pipeline.texture_version,
            )
            store.put_mesh(key, mesh.to_bytes())

        return seed

    def wait_view(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Until ``predicate()`` holds, letting the service's loop run meanwhile."""
        deadline = time.monotonic() + timeout_s
        while not self.run(_async(predicate)):
            assert time.monotonic() < deadline, "the view never caught up"
            time.sleep(0.01)


class LocalDeployment:
    """A deployment handle's calls (``handle.method.remote(*args)``, awaited) made on an
    object in this process, each in a worker thread of the service's event loop."""

    app_name = "in-process"

    def __init__(self, target: object, name: str) -> None:
        self.target = target
        self.deployment_name = name

    def __getattr__(self, method: str) -> Any:
        function = getattr(self.target, method)

        class Method:
            @staticmethod
            def remote(*args: Any) -> asyncio.Future[Any]:
                return asyncio.ensure_future(asyncio.to_thread(function, *args))

        return Method


def attach(service: InProcessService, text: object | None = None) -> None:
    """Hand the registry ``text`` as its TextToImage deployment (no model workers)."""
    missing = LocalDeployment(object(), "Missing")
    handle = LocalDeployment(text, "TextToImage") if text is not None else None
    backends = Backends(background=missing, shape=missing, text=handle)  # type: ignore[arg-type]

    async def call() -> None:
        await service.registry.attach(backends)

    service.run(call)


def tetrahedron() -> TexturedMesh:
    """A closed four-face mesh, 10 mm on a side, with a grey texture."""
    vertices = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], dtype=np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int64)
    uv = np.zeros((4, 2), dtype=np.float32)
    return TexturedMesh(vertices, faces, uv, np.full((4, 4, 3), 128, dtype=np.uint8))


def _async(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check


@contextlib.contextmanager
def in_process_service(
    config: AppConfig, clock: Callable[[], float] = time.monotonic
) -> Iterator[InProcessService]:
    """The API over an in-process registry and job view, started and stopped with it;
    ``clock`` is the view's (its freshness is measured on it)."""
    registry = JobRegistry(config, MetricsSink())
    client = in_process_client(registry)
    view = JobView(client, config.registry.status_staleness_s, clock)
    store = ArtifactStore(config.storage.root)
    tools = InProcessMeshTools(config)
    services = Services(config=config, store=store, registry=client, jobs=view, previews=tools)
    app = create_api(services)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        registry.start()
        await registry.attach_mesh_tools(tools)
        view.start()
        yield
        await view.stop()
        await registry.stop()

    app.router.lifespan_context = lifespan
    try:
        with TestClient(app) as http:
            service = InProcessService(http, registry, view, config, tools)
            service.wait_view(lambda: view.fresh)
            yield service
    finally:
        tools.child.close()
