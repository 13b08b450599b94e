"""The base every shape generator extends: a cut-out and parameters in, a mesh out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from serve_app.contracts.params import GenerationParams
from serve_app.contracts.stages import Stage
from serve_app.pipeline.types import CancelToken, CutOut, Mesh, ProgressCallback


@dataclass(frozen=True)
class ShapeProgress:
    """A generator's progress and cancel checks, for the one stage it runs."""

    on_progress: ProgressCallback
    cancel: CancelToken

    def __call__(self, fraction: float) -> None:
        """Report ``fraction`` (0 to 1) of the shape-generation stage."""
        self.on_progress(Stage.SHAPE_GENERATION, fraction)

    def check(self) -> None:
        """Raise ``JobCancelledError`` if the run was cancelled."""
        self.cancel.raise_if_cancelled()


class ShapeGenerator(ABC):
    """Makes a mesh from a cut-out.

    The mesh is in image pixel units: +X right, +Y up (minus the image row), +Z towards
    the camera, so that texturing can project the cut-out straight onto it. ``generate``
    takes parameters as they come and resolves them for the generator (what is unset,
    ``catalog.resolve_params`` fills in from the quality; a no-op on resolved ones); a
    generator's ``make`` gets them resolved and raises ``JobCancelledError`` soon after
    ``cancel`` is set (``progress.check()``).
    """

    name: str
    version: str
    #: Defaults this loaded generator uses in place of the catalog's, at every quality
    #: (hunyuan3d: its checkpoint's variant's and its device's; inflate: none).
    overrides: Mapping[str, int | float]

    def generate(
        self,
        cutout: CutOut,
        params: GenerationParams,
        on_progress: ProgressCallback,
        cancel: CancelToken,
    ) -> Mesh:
        return self.make(cutout, self.resolve(params), ShapeProgress(on_progress, cancel))

    def resolve(self, params: GenerationParams) -> GenerationParams:
        """Every parameter this generator takes filled in (a no-op on resolved ones)."""
        return params.resolved_for(self.name, self.overrides)

    @abstractmethod
    def make(self, cutout: CutOut, params: GenerationParams, progress: ShapeProgress) -> Mesh:
        """The mesh of ``cutout`` made with ``params`` (resolved for this generator)."""


@runtime_checkable
class MultiViewGenerator(Protocol):
    """A shape generator that also takes the subject's other views (cut-outs by view name,
    ``front`` among them); ``generate`` alone is the front-only case."""

    def generate_views(
        self,
        views: Mapping[str, CutOut],
        params: GenerationParams,
        on_progress: ProgressCallback,
        cancel: CancelToken,
    ) -> Mesh: ...
