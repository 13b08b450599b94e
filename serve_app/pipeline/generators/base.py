"""The interface every shape generator satisfies: a cut-out and parameters in, a mesh out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from serve_app.contracts.params import GenerationParams
from serve_app.pipeline.types import CancelToken, CutOut, Mesh, ProgressCallback


class ShapeGenerator(Protocol):
    """Makes a mesh from a cut-out.

    The mesh is in image pixel units: +X right, +Y up (minus the image row), +Z towards
    the camera, so that texturing can project the cut-out straight onto it. ``generate``
    takes parameters as they come (what is unset, ``catalog.resolve_params`` fills in from
    the quality) and raises ``JobCancelledError`` soon after ``cancel`` is set.
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


@runtime_checkable
class MultiViewGenerator(ShapeGenerator, Protocol):
    """A shape generator that also takes the subject's other views (cut-outs by view name,
    ``front`` among them); ``generate`` alone is the front-only case."""

    def generate_views(
        self,
        views: Mapping[str, CutOut],
        params: GenerationParams,
        on_progress: ProgressCallback,
        cancel: CancelToken,
    ) -> Mesh: ...
