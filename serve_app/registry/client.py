"""How the rest of the service reaches the registry: ``build_app`` creates the actor, the
replicas find it by its configured name, and the ingress talks to it through a typed client.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, cast, overload

import ray
from ray.actor import ActorHandle

from serve_app.config import AppConfig
from serve_app.errors import OrfeasError
from serve_app.ray_errors import as_orfeas_error
from serve_app.registry.actor import JobRegistry, RegistryActor

#: Longest ``build_app`` waits for an existing registry to adopt a new config.
CONFIGURE_TIMEOUT_S = 60.0
#: Longest a replica waits for the registry actor's name to be known.
FIND_TIMEOUT_S = 30.0

P = ParamSpec("P")
R = TypeVar("R")


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


class Forward(Generic[P, R]):
    """A ``JobRegistry`` method as the client calls it: the method's own signature, its
    answer unwrapped (a refusal the registry returns is raised here)."""

    def __init__(self, method: Callable[Concatenate[Any, P], Awaitable[R | OrfeasError]]) -> None:
        self.name = method.__name__

    @overload
    def __get__(self, client: None, owner: type) -> Self: ...

    @overload
    def __get__(self, client: RegistryClient, owner: type) -> Callable[P, Awaitable[R]]: ...

    def __get__(self, client: RegistryClient | None, owner: type) -> Any:
        if client is None:
            return self
        return functools.partial(client.call, self.name)


class RegistryClient:
    """The ingress's typed view of the registry; errors come back as OrfeasError.

    ``actor`` is the registry actor's handle (or anything whose ``actor.method.remote(...)``
    returns an awaitable, as Ray's does). Each method below is ``JobRegistry``'s own.
    """

    def __init__(self, actor: ActorHandle) -> None:
        self._actor = actor

    attach = Forward(JobRegistry.attach)
    attach_mesh_tools = Forward(JobRegistry.attach_mesh_tools)
    make_variant = Forward(JobRegistry.make_variant)
    register_upload = Forward(JobRegistry.register_upload)
    submit = Forward(JobRegistry.submit)
    submit_text = Forward(JobRegistry.submit_text)
    get = Forward(JobRegistry.get)
    cancel = Forward(JobRegistry.cancel)
    job_log = Forward(JobRegistry.job_log)
    changes = Forward(JobRegistry.changes)
    sync = Forward(JobRegistry.sync)
    list_jobs = Forward(JobRegistry.list_jobs)
    ping = Forward(JobRegistry.ping)
    metrics = Forward(JobRegistry.metrics)
    subscribe = Forward(JobRegistry.subscribe)
    deliveries = Forward(JobRegistry.deliveries)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``method``'s answer from the registry; a returned refusal is raised."""
        try:
            reply = await getattr(self._actor, method).remote(*args, **kwargs)
        except (OrfeasError, ray.exceptions.RayError) as exc:
            raise as_orfeas_error(exc) from None
        if isinstance(reply, OrfeasError):
            raise reply
        return reply
