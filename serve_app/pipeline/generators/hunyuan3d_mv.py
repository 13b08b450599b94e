"""The ``hunyuan3d_mv`` generator: Hunyuan3D-2mv, the shape from the front, left, back and
right views at once (hy3dgen's ``MVImageProcessorV2`` and ``DinoImageEncoderMV``).

It loads and runs as ``hunyuan3d`` does (a local directory, checked config, offline); only
what the pipeline is given differs: the cut-outs of the views it knows by name, instead of
the front alone. The mesh is placed over the front cut-out, as ``hunyuan3d``'s is.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

import numpy as np
from PIL import Image

from serve_app.contracts.params import GenerationParams, GeneratorName
from serve_app.errors import ValidationFailedError
from serve_app.pipeline.generators.hunyuan3d import RECIPE, Hunyuan3DGenerator, model_digest
from serve_app.pipeline.types import CancelToken, CutOut, Mesh, ProgressCallback

#: The views Hunyuan3D-2mv was trained on (hy3dgen's ``MVImageProcessorV2.view2idx``).
MV_VIEWS = ("front", "left", "back", "right")


class Hunyuan3DMVGenerator(Hunyuan3DGenerator):
    """Hunyuan3D-2mv behind the multi-view shape-generator interface.

    ``generate_views`` uses the front and whichever of left, back and right are given (other
    views, top and bottom, are for texturing only); ``generate`` is the front alone. One run
    at a time, as for ``hunyuan3d`` (the replica's lock): the views of the run in progress
    are held on the instance while it runs.
    """

    name = GeneratorName.HUNYUAN3D_MV.value

    _views: dict[str, CutOut] | None = None

    def _version(self) -> str:
        hy3dgen = metadata.version("hy3dgen")
        dtype = str(self.dtype).removeprefix("torch.")
        digest = model_digest(self.files)[:16]
        return f"hunyuan3d_mv-{RECIPE}+hy3dgen{hy3dgen}+{digest}+{dtype}"

    def generate_views(
        self,
        views: Mapping[str, CutOut],
        params: GenerationParams,
        on_progress: ProgressCallback,
        cancel: CancelToken,
    ) -> Mesh:
        """The shape from the views hy3dgen knows (the front at least; a 422 without it)."""
        if "front" not in views:
            raise ValidationFailedError(
                "hunyuan3d_mv needs the front view", views=sorted(views), generator=self.name
            )
        self._views = {name: views[name] for name in MV_VIEWS if name in views}
        try:
            return self.generate(views["front"], params, on_progress, cancel)
        finally:
            self._views = None

    def _pipeline_image(self, cutout: CutOut) -> Any:
        """The views as hy3dgen's multi-view processor takes them: RGBA pictures by view."""
        views = self._views or {"front": cutout}
        return {
            name: Image.fromarray(np.ascontiguousarray(view.rgba), "RGBA")
            for name, view in views.items()
        }
