"""Ingress: the FastAPI front door; validates, stores uploads and talks to the registry."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.limiter import LimiterClient, find_limiter
from deployments.meshtools import PreviewRenderer
from serve_app.api.app import create_api
from serve_app.api.deps import Services
from serve_app.config import AppConfig
from serve_app.registry.client import RegistryClient, find_registry
from serve_app.registry.variants import MeshToolsHandle
from serve_app.registry.view import JobView
from serve_app.registry.workers import Backends
from serve_app.storage import ArtifactStore

#: Deployment states in which replicas serve requests.
SERVING_STATES = frozenset({"HEALTHY", "UPSCALING", "DOWNSCALING"})


@serve.ingress()
class Ingress:
    """CPU, stateless, autoscaled. Jobs never run inside its requests: it claims them in
    the registry, which dispatches them, so its replicas can come and go freely. Each
    replica answers status reads from its own job view, fed by the registry's changes.
    """

    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self,
        config: AppConfig,
        background: DeploymentHandle,
        shape: DeploymentHandle,
        mesh_tools: DeploymentHandle,
        text: DeploymentHandle | None = None,
    ) -> None:
        self._config = config
        self._app_name = serve.get_replica_context().app_name
        store = ArtifactStore(config.storage.root)
        await asyncio.to_thread(store.check_writable)
        registry = RegistryClient(find_registry(config))
        await registry.attach(Backends(background=background, shape=shape, text=text))
        await registry.attach_mesh_tools(MeshToolsHandle(mesh_tools))
        jobs = JobView(registry, config.registry.status_staleness_s)
        jobs.start()
        limiter = find_limiter(config) if config.security.rate_limited else None
        self._services: Services = Services(
            config=config,
            store=store,
            registry=registry,
            jobs=jobs,
            deployment_status=self._deployment_status,
            limiter=LimiterClient(limiter) if limiter is not None else None,
            previews=PreviewRenderer(mesh_tools),
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self._services)

    async def check_health(self) -> None:
        await asyncio.to_thread(self._services.store.check_writable)

    async def __del__(self) -> None:
        """Serve calls this when the replica stops: stop following the feed."""
        services: Services | None = getattr(self, "_services", None)
        if services is not None:
            await services.jobs.stop()

    async def _deployment_status(self) -> dict[str, tuple[bool, str]]:
        """Each deployment of this application: serving or not, and its replica states."""
        status = await asyncio.to_thread(serve.status)
        app = status.applications.get(self._app_name)
        if app is None:
            return {}
        result: dict[str, tuple[bool, str]] = {}
        for name, deployment in app.deployments.items():
            state = str(getattr(deployment.status, "value", deployment.status))
            replicas = ", ".join(
                f"{getattr(k, 'value', k)}={v}" for k, v in deployment.replica_states.items()
            )
            result[name] = (state in SERVING_STATES, f"{state} ({replicas})")
        return result
