"""Shape generators: image + mask + parameters → mesh, chosen by name in config."""

from __future__ import annotations

from serve_app.errors import InvalidInputError
from serve_app.pipeline.config import PipelineConfig
from serve_app.pipeline.generators.base import ShapeGenerator
from serve_app.pipeline.generators.catalog import spec


def load_generator(name: str, config: PipelineConfig) -> ShapeGenerator:
    """The enabled generator ``name``, loaded with its settings from ``config``."""
    enabled = config.generators.enabled()
    if name not in enabled:
        raise InvalidInputError(
            f"shape generator {name!r} is not enabled; enabled: {', '.join(enabled)}"
        )
    return spec(name).load(config)
