"""The worker deployments a run goes through: their handles, generator versions, the cache.

An ingress replica hands the registry the deployment handles once, when it starts
(``JobRegistry.attach``); their names are journaled, so a restarted registry finds the
deployments again without waiting for an ingress. A model run is one chain,
``shape.build.remote(ticket, background.remove.remote(ticket))``: the cut-out goes from
one replica to the other through Ray's object store, never through the registry. A text
run first asks ``text.generate.remote(image_ticket)`` (only where a text-to-image model is
configured) for its picture, which that replica stores as the job's input; the model
stages then read it from the store as they read an upload.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from serve_app.contracts.runs import ImageTicket, JobTicket, RunResult, StoredImage, TextModel
from serve_app.errors import (
    GeneratorVersionChangedError,
    ModelNotConfiguredError,
    ModelUnavailableError,
)
from serve_app.pipeline.text_params import image_cache_key, with_size
from serve_app.ray_errors import as_orfeas_error
from serve_app.registry.cache import cache_key
from serve_app.registry.journal import Ledger, Remembered
from serve_app.storage import ArtifactStore

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

logger = logging.getLogger(__name__)

#: A ticket, and what a worker deployment makes of it.
K = TypeVar("K", JobTicket, ImageTicket)
R = TypeVar("R", RunResult, StoredImage)

#: The journal's record of the worker deployments (application and deployment names).
BACKENDS_META = "backends"


#: The setting that names the text-to-image model (in errors that say it is missing).
TEXT_SETTING = "text_to_image.model_path"


@dataclass(frozen=True)
class Backends:
    """Handles of the worker deployments runs go through; ``text`` only where a
    text-to-image model is configured."""

    background: DeploymentHandle
    shape: DeploymentHandle
    text: DeploymentHandle | None = None

    def names(self) -> dict[str, str]:
        names = {
            "app": self.shape.app_name,
            "background": self.background.deployment_name,
            "shape": self.shape.deployment_name,
        }
        if self.text is not None:
            names["text"] = self.text.deployment_name
        return names


class Workers:
    """Runs a job's ticket on the worker deployments, or completes it from the cache."""

    def __init__(
        self, ledger: Ledger, store: ArtifactStore, background_model: str, texture_version: str
    ) -> None:
        self.store = store
        self.background_model = background_model
        self.texture_version = texture_version
        #: Generator name → the version its ShapeTexture replicas report (cache keys).
        self.versions: dict[str, str] = {}
        #: Generator name → why its ShapeTexture replicas could not load it (readiness).
        self.errors: dict[str, str] = {}
        #: The text-to-image model a TextToImage replica reported (image cache keys), or
        #: why it could not load it.
        self.text_model: TextModel | None = None
        self.text_error: str | None = None
        self._backends = Remembered(ledger, BACKENDS_META, _handles)

    def report(self, name: str, version: str | None, error: str | None = None) -> None:
        """A ShapeTexture replica's generator ``name``: its version, or why it did not load."""
        if version is not None:
            self.versions[name] = version
            self.errors.pop(name, None)
        elif error is not None:
            self.errors[name] = error
            self.versions.pop(name, None)

    def report_text_model(self, model: TextModel | None, error: str | None = None) -> None:
        """A TextToImage replica's model: its version and native size, or why it did not load."""
        if model is not None:
            self.text_model, self.text_error = model, None
        elif error is not None:
            self.text_model, self.text_error = None, error

    def attach(self, backends: Backends) -> None:
        """Use these deployments from now on (and after a restart: their names are kept)."""
        held = self._backends.held
        if held is None or held.names() != backends.names():
            self._backends.attach(backends, backends.names())

    def backends(self) -> Backends | None:
        """The attached deployments, or those the journal names (after a restart)."""
        return self._backends.get()

    def _reachable(self) -> Backends:
        """The deployments to dispatch to; a retryable error while none is known yet."""
        backends = self.backends()
        if backends is None:
            raise ModelUnavailableError(
                "the worker deployments are not reachable yet", retryable=True
            )
        return backends

    async def run(self, ticket: JobTicket, current: Callable[[], bool]) -> RunResult | None:
        """The run's result; None when ``current()`` says it ended while the cache was
        checked (a cancel), so nothing was dispatched.

        The ticket is keyed here (the generator's version and the cache key), once, and
        the ShapeTexture replica stores the mesh under that key. A generator whose version
        no replica has reported yet is asked for it first.
        """
        generator = ticket.request.generator
        version = self.versions.get(generator)
        if version is None:
            version = await self._reachable().shape.generator_version.remote(generator)
            self.versions[generator] = version
        ticket = self.keyed(ticket, version)
        return await self._cached_or_sent(self._from_cache(ticket), current, ticket, self._build)

    async def _build(self, backends: Backends, ticket: JobTicket) -> RunResult:
        """The keyed ticket's run on the worker deployments: its cut-out, then its mesh."""
        generator = ticket.request.generator
        cutout = backends.background.remove.remote(ticket)
        try:
            result = await backends.shape.build.remote(ticket, cutout)
        except Exception as exc:
            error = as_orfeas_error(exc)
            if isinstance(error, GeneratorVersionChangedError):  # retried under the new key
                self.report(generator, str(error.details["version"]))
            raise error from None
        self.versions[result.generator] = result.generator_version
        return result

    def keyed(self, ticket: JobTicket, version: str) -> JobTicket:
        """``ticket`` for ``version`` of its generator, with its canonical mesh's cache key."""
        request = ticket.request
        upload = ticket.upload
        views = {str(v.view): v.sha256 for v in upload.views}
        if upload.view != "front":  # a mesh to texture photographed without a front
            views[str(upload.view)] = upload.sha256
        key = cache_key(
            upload.sha256,
            request.params,
            self.background_model,
            request.generator,
            version,
            views=views,
            mesh=upload.mesh.sha256 if upload.mesh else None,
            texture=self.texture_version,
        )
        return replace(ticket, generator_version=version, artifact_key=key)

    async def make_image(
        self, ticket: ImageTicket, current: Callable[[], bool]
    ) -> StoredImage | None:
        """A text run's picture, stored as the job's input: from the image cache when this
        prompt, these parameters and this model version were made before (no deployment
        is called), else made by the TextToImage deployment. None when ``current()`` says
        the run ended while the cache was checked.
        """
        cached = self._image_from_cache(ticket)
        return await self._cached_or_sent(cached, current, ticket, self._generate_image)

    async def _generate_image(self, backends: Backends, ticket: ImageTicket) -> StoredImage:
        """The text run's picture made by the TextToImage deployment."""
        if backends.text is None:
            raise ModelNotConfiguredError(
                f"text-to-image is not configured on this service (setting {TEXT_SETTING})",
                feature="text_to_image",
                setting=TEXT_SETTING,
            )
        image: StoredImage = await backends.text.generate.remote(ticket)
        return image

    async def _cached_or_sent(
        self,
        cached: Awaitable[R | None],
        current: Callable[[], bool],
        ticket: K,
        send: Callable[[Backends, K], Awaitable[R]],
    ) -> R | None:
        """What the cache holds for ``ticket``; else None when ``current()`` says the run
        ended while the cache was checked (nothing is sent), else what ``send`` gets from
        the worker deployments."""
        result = await cached
        if result is not None:
            return result
        if not current():
            return None
        return await send(self._reachable(), ticket)

    async def _image_from_cache(self, ticket: ImageTicket) -> StoredImage | None:
        """The stored picture of this exact request, recorded as the job's input, if any."""
        model = self.text_model
        if model is None:
            return None
        start = time.perf_counter()
        params = with_size(ticket.params, model.native_size)
        if not params.resolved:
            return None
        key = image_cache_key(params, model.version)
        upload = await asyncio.to_thread(
            self.store.adopt_generated_image, ticket.job_id, key, ticket.owner
        )
        if upload is None:
            return None
        seconds = time.perf_counter() - start
        return StoredImage(key, upload, params, model.version, True, seconds)

    async def _from_cache(self, ticket: JobTicket) -> RunResult | None:
        """A finished result if this exact generation (the keyed ticket's) is stored."""
        key, version = ticket.artifact_key, ticket.generator_version
        assert key is not None and version is not None, "the ticket is keyed first"
        meta = await asyncio.to_thread(self.store.mesh_meta, key)
        if meta is None:
            return None
        watertight = meta.get("watertight")
        return RunResult(
            artifact_key=key,
            formats=(),
            generator=ticket.request.generator,
            generator_version=version,
            cached=True,
            watertight=watertight if isinstance(watertight, bool) else None,
        )


def _handles(names: dict[str, str]) -> Backends | None:
    try:
        from ray import serve

        app = names["app"]
        text = names.get("text")
        return Backends(
            background=serve.get_deployment_handle(names["background"], app_name=app),
            shape=serve.get_deployment_handle(names["shape"], app_name=app),
            text=serve.get_deployment_handle(text, app_name=app) if text else None,
        )
    except Exception as exc:  # Serve or the application is not (yet) there
        logger.info("worker deployments not reachable yet: %s", exc)
        return None
