"""The TextToImage deployment's work: a backend from its config section, and a ticket's
picture made (or found in the cache) and stored as its job's input."""

from __future__ import annotations

import io
import time

from serve_app.config import TextToImageConfig
from serve_app.contracts.runs import ImageTicket, StoredImage
from serve_app.errors import ModelNotConfiguredError
from serve_app.pipeline.text_params import image_cache_key
from serve_app.pipeline.text_to_image import (
    SETTING,
    StepCallback,
    TextToImageBackend,
    no_steps,
)
from serve_app.pipeline.types import CancelToken
from serve_app.storage import ArtifactStore


def backend_from_config(config: TextToImageConfig) -> TextToImageBackend:
    """The backend of the ``text_to_image`` config section (its model_path must be set)."""
    if config.model_path is None:
        raise ModelNotConfiguredError("text_to_image.model_path is not set", setting=SETTING)
    return TextToImageBackend(
        config.model_path,
        config.device,
        config.dtype,
        max_pixels=config.max_pixels,
        max_steps=config.max_steps,
        default_steps=config.default_steps,
        default_guidance_scale=config.default_guidance_scale,
    )


def make_image(
    backend: TextToImageBackend,
    store: ArtifactStore,
    ticket: ImageTicket,
    on_step: StepCallback = no_steps,
    cancel: CancelToken | None = None,
) -> StoredImage:
    """The PNG of ``ticket`` in ``store``, as its job's input: from the cache when this
    prompt, these parameters and this model version were made before, else generated."""
    start = time.perf_counter()
    params = backend.resolve(ticket.params)
    key = image_cache_key(params, backend.version)
    upload = store.adopt_generated_image(ticket.job_id, key, ticket.owner)
    if upload is not None:
        return StoredImage(key, upload, params, backend.version, True, time.perf_counter() - start)
    image, params = backend.generate(params, on_step, cancel)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    upload = store.put_generated_image(ticket.job_id, key, buffer.getvalue(), ticket.owner)
    return StoredImage(key, upload, params, backend.version, False, time.perf_counter() - start)
