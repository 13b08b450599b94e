"""TextToImage: the (GPU) deployment that turns a prompt into a PNG, the input of a 3D run."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from deployments.worker import RunReporter, lower_priority
from serve_app.config import AppConfig
from serve_app.contracts.runs import ImageTicket, StoredImage
from serve_app.contracts.stages import Stage
from serve_app.errors import ModelNotConfiguredError, ModelUnavailableError, OrfeasError
from serve_app.registry.client import find_registry
from serve_app.storage import ArtifactStore

if TYPE_CHECKING:
    from serve_app.pipeline.text_to_image import TextToImageBackend

logger = logging.getLogger(__name__)

SETTING = "text_to_image.model_path"


class TextToImage:
    """A diffusers text-to-image pipeline, loaded once per replica from
    ``text_to_image.model_path`` (hub off) and used by one request at a time (the backend's
    lock, on top of ``max_ongoing_requests``).

    ``generate`` writes the PNG to the ArtifactStore itself, as the job's input and under
    its cache key, and returns only where it went (a StoredImage), never pixels. Progress
    goes to the registry per denoising step (the decode and store count as one more), and
    a cancel stops the run between steps. A model that cannot load (a missing or broken
    directory) is reported to the registry with the reason, which ``/api/health`` shows;
    its runs fail with that reason while the rest of the service keeps serving.
    """

    def __init__(self, config: AppConfig) -> None:

        if config.text_to_image.model_path is None:
            raise ModelNotConfiguredError(f"{SETTING} is not set", setting=SETTING)
        lower_priority(config.text_to_image.deployment.niceness)
        self._config = config
        self._store = ArtifactStore(config.storage.root)
        self._registry = find_registry(config)
        self._backend: TextToImageBackend | None = None
        self._load_error: OrfeasError | None = None
        try:
            from serve_app.work.text_to_image import backend_from_config

            self._backend = backend_from_config(config.text_to_image)
        except OrfeasError as exc:
            logger.error("the text-to-image model is not available: %s", exc.message)
            self._load_error = exc
        self._report_model()

    @property
    def version(self) -> str | None:
        """The loaded model's version (its digest and dtype), part of every image key."""
        return self._backend.version if self._backend is not None else None

    def generate(self, ticket: ImageTicket) -> StoredImage:
        """The image of ``ticket``: from the cache when the same prompt, parameters and model
        version were made before, else generated; stored, and its place returned."""
        from serve_app.work.text_to_image import make_image

        backend = self._backend
        if backend is None:
            message = self._load_error.message if self._load_error else "no model is loaded"
            raise ModelUnavailableError(message, setting=SETTING)
        interval = self._config.registry.heartbeat_interval_s
        with RunReporter(self._registry, ticket, Stage.TEXT_TO_IMAGE, interval) as reporter:

            def on_step(done: int, total: int) -> None:
                reporter.on_progress(Stage.TEXT_TO_IMAGE, done / (total + 1))

            image = make_image(backend, self._store, ticket, on_step, reporter.cancel)
            reporter.on_progress(Stage.TEXT_TO_IMAGE, 1.0)
        return image

    def _report_model(self) -> None:
        """Tell the registry which model this replica runs, or why it could not load it.
        Sent at start and with every health check, so a restarted registry knows again."""
        try:
            if self._backend is not None:
                self._registry.report_text_model.remote(self._backend.model)
            elif self._load_error is not None:
                self._registry.report_text_model.remote(None, self._load_error.message)
        except Exception as exc:  # a missing registry must not make this replica unhealthy
            logger.warning("could not report the text-to-image model to the registry: %s", exc)

    def check_health(self) -> None:
        self._store.check_writable()
        self._report_model()
