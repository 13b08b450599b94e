"""What the routes depend on: the services of one ingress replica, as typed aliases."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Protocol

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from serve_app.api.responses import StatusBodies
from serve_app.api.security import Limiter
from serve_app.config import AppConfig
from serve_app.meshtools.variants import PreviewOrder
from serve_app.registry.jobs import EVERYONE, Viewer
from serve_app.registry.view import JobView
from serve_app.storage import ArtifactStore

if TYPE_CHECKING:
    from serve_app.registry.client import RegistryClient


class PreviewMaker(Protocol):
    """Renders a preview into the store (the MeshTools deployment); errors are OrfeasError."""

    async def render(self, order: PreviewOrder) -> None: ...


@dataclass
class Services:
    """Long-lived objects shared by every request of one ingress replica."""

    config: AppConfig
    store: ArtifactStore
    #: The registry's writes, logs and probes (reads of job state go to ``jobs``).
    registry: RegistryClient
    #: This replica's snapshots of every job (status, lists, live streams).
    jobs: JobView
    #: Optional readiness probe of the deployments: name → (healthy, detail).
    deployment_status: Callable[[], Awaitable[dict[str, tuple[bool, str]]]] | None = None
    #: The rate limiter every replica shares; None: no rate limits are enforced.
    limiter: Limiter | None = None
    #: Where previews are rendered; None: no MeshTools deployment (previews answer 503).
    previews: PreviewMaker | None = None
    #: Status bodies rendered once per snapshot, for the many polls of one job.
    status_bodies: StatusBodies = field(default_factory=StatusBodies)
    _conversion_locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def conversion_lock(self, key: str) -> asyncio.Lock:
        """One lock per derived file (a format, a preview), so concurrent requests make it
        once."""
        return self._conversion_locks.setdefault(key, asyncio.Lock())

    def release_conversion_lock(self, key: str) -> None:
        lock = self._conversion_locks.get(key)
        if lock is not None and not lock.locked():
            del self._conversion_locks[key]


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def viewer_of(connection: HTTPConnection) -> Viewer:
    """Whose jobs the caller may see (the security middleware decided; else everyone's)."""
    viewer: Viewer = getattr(connection.state, "viewer", EVERYONE)
    return viewer


async def get_viewer(request: Request) -> Viewer:
    return viewer_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]
ViewerDep = Annotated[Viewer, Depends(get_viewer)]
