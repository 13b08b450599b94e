"""Shape generators: image + mask + parameters → mesh, chosen by name in config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from serve_app.errors import InvalidInputError
from serve_app.pipeline.types import CancelToken, CutOut, GenerationParams, Mesh, ProgressCallback


class ShapeGenerator(Protocol):
    """Makes a closed mesh from a cut-out.

    The mesh is in image pixel units: +X right, +Y up (minus the image row), +Z towards
    the camera, so that texturing can project the cut-out straight onto it.
    """

    name: str
    version: str

    def generate(
        self,
        cutout: CutOut,
        params: GenerationParams,
        on_progress: ProgressCallback,
        cancel: CancelToken,
    ) -> Mesh: ...


def _inflate(device: str) -> ShapeGenerator:
    from serve_app.pipeline.generators.inflate import InflateGenerator

    return InflateGenerator(device=device)


GENERATORS: dict[str, Callable[[str], ShapeGenerator]] = {"inflate": _inflate}


def get_generator(name: str, device: str = "auto") -> ShapeGenerator:
    """The shape generator registered as ``name``, placed on ``device`` (auto, cpu, cuda)."""
    try:
        factory = GENERATORS[name]
    except KeyError:
        known = ", ".join(sorted(GENERATORS))
        raise InvalidInputError(f"unknown shape generator {name!r}; known: {known}") from None
    return factory(device)
