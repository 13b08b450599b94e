"""How the rest of the service reaches the registry: ``build_app`` creates the actor, the
replicas find it by its configured name, and the ingress talks to it through a typed client.
"""

from __future__ import annotations

import time
from typing import Any, cast

import ray
from ray.actor import ActorHandle

from serve_app.config import AppConfig
from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.runs import RunRequest, UploadInfo
from serve_app.contracts.text import TextToImageParams
from serve_app.contracts.variants import VariantOrder
from serve_app.errors import OrfeasError
from serve_app.metrics import MetricsSnapshot
from serve_app.ray_errors import as_orfeas_error
from serve_app.registry.actor import RegistryActor, SyncPage
from serve_app.registry.feeds import Changes, JobLog
from serve_app.registry.jobs import JobPage, JobSnapshot, Viewer
from serve_app.registry.variants import MeshToolsBackend
from serve_app.registry.workers import Backends

#: Longest ``build_app`` waits for an existing registry to adopt a new config.
CONFIGURE_TIMEOUT_S = 60.0
#: Longest a replica waits for the registry actor's name to be known.
FIND_TIMEOUT_S = 30.0


def create_registry(config: AppConfig) -> ActorHandle:
    """The registry actor named in ``config``, created with its options unless it exists
    (a redeploy, or another application of the same name); either way it adopts ``config``.
    """
    settings = config.registry
    options = settings.actor.ray_options(settings.name, settings.namespace)
    actor = cast(ActorHandle, ray.remote(RegistryActor).options(**options).remote(config))
    ray.get(actor.configure.remote(config), timeout=CONFIGURE_TIMEOUT_S)
    return actor


def find_actor(name: str, namespace: str, timeout_s: float = FIND_TIMEOUT_S) -> ActorHandle:
    """The named actor ``build_app`` created (waiting while its name is not known yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return cast(ActorHandle, ray.get_actor(name, namespace=namespace))
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def find_registry(config: AppConfig) -> ActorHandle:
    return find_actor(config.registry.name, config.registry.namespace)


class RegistryClient:
    """The ingress's typed view of the registry; errors come back as OrfeasError."""

    def __init__(self, actor: ActorHandle) -> None:
        self._actor = actor

    async def attach(self, backends: Backends) -> None:
        await self._call("attach", backends)

    async def attach_mesh_tools(self, backend: MeshToolsBackend) -> None:
        await self._call("attach_mesh_tools", backend)

    async def make_variant(self, order: VariantOrder) -> JobSnapshot:
        return await self._call("make_variant", order)

    async def register_upload(
        self, job_id: str, upload: UploadInfo, owner: str | None = None
    ) -> JobSnapshot:
        return await self._call("register_upload", job_id, upload, owner)

    async def submit(
        self, job_id: str, request: RunRequest, client: str | None = None
    ) -> JobSnapshot:
        return await self._call("submit", job_id, request, client)

    async def submit_text(
        self,
        job_id: str,
        text: TextToImageParams,
        then: RunRequest | None = None,
        owner: str | None = None,
        client: str | None = None,
    ) -> JobSnapshot:
        return await self._call("submit_text", job_id, text, then, owner, client)

    async def get(self, job_id: str) -> JobSnapshot:
        return await self._call("get", job_id)

    async def cancel(self, job_id: str) -> JobSnapshot:
        return await self._call("cancel", job_id)

    async def job_log(self, job_id: str) -> JobLog:
        return await self._call("job_log", job_id)

    async def changes(self, epoch: str | None, since: int, timeout_s: float) -> Changes:
        return await self._call("changes", epoch, since, timeout_s)

    async def sync(self, offset: int, limit: int) -> SyncPage:
        return await self._call("sync", offset, limit)

    async def list_jobs(
        self, offset: int, limit: int, status: JobStatus | None, viewer: Viewer
    ) -> JobPage:
        return await self._call("list_jobs", offset, limit, status, viewer)

    async def ping(self) -> dict[str, Any]:
        return await self._call("ping")

    async def metrics(self) -> MetricsSnapshot:
        return await self._call("metrics")

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            reply = await getattr(self._actor, method).remote(*args)
        except (OrfeasError, ray.exceptions.RayError) as exc:
            raise as_orfeas_error(exc) from None
        if isinstance(reply, OrfeasError):
            raise reply
        return reply
