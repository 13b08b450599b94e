"""TextToImage: the (GPU) deployment that turns a prompt into a PNG, the input of a 3D run."""

from __future__ import annotations

from deployments.worker import lower_priority
from serve_app.config import AppConfig
from serve_app.pipeline.text_params import ImageTicket, StoredImage
from serve_app.pipeline.types import CancelToken
from serve_app.storage import ArtifactStore


class TextToImage:
    """A diffusers text-to-image pipeline, loaded once per replica from
    ``text_to_image.model_path`` (hub off) and used by one request at a time (the backend's
    lock, on top of ``max_ongoing_requests``).

    ``generate`` writes the PNG to the ArtifactStore itself, as the job's input and under
    its cache key, and returns only where it went (a StoredImage), never pixels.
    """

    def __init__(self, config: AppConfig) -> None:
        from serve_app.pipeline.text_to_image import TextToImageBackend

        lower_priority(config.text_to_image.deployment.niceness)
        self._store = ArtifactStore(config.storage.root)
        self._backend = TextToImageBackend.from_config(config.text_to_image)

    @property
    def version(self) -> str:
        """The loaded model's version (its digest and dtype), part of every image key."""
        return self._backend.version

    def generate(self, ticket: ImageTicket) -> StoredImage:
        """The image of ``ticket``: from the cache when the same prompt, parameters and model
        version were made before, else generated; stored, and its place returned."""
        from serve_app.pipeline.text_to_image import make_image, no_steps

        return make_image(self._backend, self._store, ticket, no_steps, CancelToken())

    def check_health(self) -> None:
        self._store.check_writable()
