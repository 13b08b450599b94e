"""The ``hunyuan3d_mv`` generator: Hunyuan3D-2mv, the shape from the front, left, back and
right views at once (hy3dgen's ``MVImageProcessorV2`` and ``DinoImageEncoderMV``).

It loads and runs as ``hunyuan3d`` does (a local directory, checked config, offline); only
what the pipeline is given differs: the cut-outs of the views it knows by name, instead of
the front alone. The mesh is placed over the front cut-out, as ``hunyuan3d``'s is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from serve_app.contracts.params import GenerationParams, GeneratorName
from serve_app.errors import ValidationFailedError
from serve_app.pipeline.generators.base import ShapeProgress
from serve_app.pipeline.generators.hunyuan3d import Hunyuan3DGenerator
from serve_app.pipeline.types import CancelToken, CutOut, Mesh, ProgressCallback

#: The views Hunyuan3D-2mv was trained on (hy3dgen's ``MVImageProcessorV2.view2idx``).
MV_VIEWS = ("front", "left", "back", "right")


class Hunyuan3DMVGenerator(Hunyuan3DGenerator):
    """Hunyuan3D-2mv behind the multi-view shape-generator interface.

    ``generate_views`` uses the front and whichever of left, back and right are given (other
    views, top and bottom, are for texturing only); ``generate`` is the front alone. Runs
    share the device section's lock as ``hunyuan3d``'s do; each run's views travel with it.
    """

    name = GeneratorName.HUNYUAN3D_MV.value

    def _version(self) -> str:
        """``hunyuan3d``'s version (checkpoint, VAE, decoder, variant, dtype) under this name."""
        return self.name + super()._version().removeprefix(GeneratorName.HUNYUAN3D.value)

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
        p = self.resolve(params)
        progress = ShapeProgress(on_progress, cancel)
        pictures = {name: _picture(views[name]) for name in MV_VIEWS if name in views}
        volume = self._device_section(pictures, p, progress)
        return self._finish(volume, views["front"], p, progress)

    def _pipeline_image(self, cutout: CutOut) -> Any:
        """The front alone, as hy3dgen's multi-view processor takes it (pictures by view)."""
        return {"front": _picture(cutout)}


def _picture(cutout: CutOut) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(cutout.rgba), "RGBA")
