"""Texture synthesis: project the cut-out onto the mesh (UVs, base colour, PBR material)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from PIL import Image
from scipy import ndimage

from serve_app.contracts.params import GenerationParams
from serve_app.contracts.stages import Stage
from serve_app.pipeline.types import (
    CancelToken,
    CutOut,
    Mesh,
    ProgressCallback,
    TexturedMesh,
)

#: Longest side of the base-colour texture per quality level (never above the photo's own).
TEXTURE_SIDE = {
    1: 256,
    2: 384,
    3: 512,
    4: 768,
    5: 1024,
    6: 1024,
    7: 1536,
    8: 2048,
    9: 2048,
    10: 2048,
}
ROUGHNESS = 0.8


def texture_mesh(
    views: CutOut | Mapping[str, CutOut],
    mesh: Mesh,
    params: GenerationParams,
    on_progress: ProgressCallback,
    cancel: CancelToken,
) -> TexturedMesh:
    """Planar projection of the front cut-out along Z: the front shows the photo, the back
    its mirror image; the other views are not used by this projection (without a front,
    the first view given is projected). Pixels outside the subject take the colour of the
    nearest subject pixel, so the rim never samples the removed background (and never
    black).
    """
    if isinstance(views, CutOut):
        cutout = views
    else:
        cutout = views["front"] if "front" in views else next(iter(views.values()))
    on_progress(Stage.TEXTURE_SYNTHESIS, 0.0)
    rows = np.flatnonzero(cutout.mask.any(axis=1))
    cols = np.flatnonzero(cutout.mask.any(axis=0))
    pad = 2
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + 1 + pad, cutout.mask.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + 1 + pad, cutout.mask.shape[1])
    crop_h, crop_w = r1 - r0, c1 - c0
    side = min(TEXTURE_SIDE[params.quality], max(crop_h, crop_w))
    k = side / max(crop_h, crop_w)
    size = (max(1, round(crop_w * k)), max(1, round(crop_h * k)))

    rgb = Image.fromarray(np.ascontiguousarray(cutout.rgba[r0:r1, c0:c1, :3]))
    alpha = Image.fromarray(np.ascontiguousarray(cutout.rgba[r0:r1, c0:c1, 3]))
    texture = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR))
    inside = np.asarray(alpha.resize(size, Image.Resampling.BILINEAR)) > 200
    # keep clear of the photo's halo at the rim
    inside = ndimage.binary_erosion(inside, iterations=max(1, round(side / 512)))
    cancel.raise_if_cancelled()
    on_progress(Stage.TEXTURE_SYNTHESIS, 0.4)
    texture = fill_outside(texture, inside)
    on_progress(Stage.TEXTURE_SYNTHESIS, 0.8)

    x = mesh.vertices[:, 0].astype(np.float64)
    row = -mesh.vertices[:, 1].astype(np.float64)
    uv = np.stack([(x - c0) / crop_w, 1.0 - (row - r0) / crop_h], axis=1)
    on_progress(Stage.TEXTURE_SYNTHESIS, 1.0)
    return TexturedMesh(
        vertices=mesh.vertices,
        faces=mesh.faces,
        uv=np.clip(uv, 0.0, 1.0).astype(np.float32),
        texture=np.ascontiguousarray(texture),
        roughness=ROUGHNESS,
        metallic=0.0,
    )


def fill_outside(image: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Give every pixel outside ``inside`` the colour of its nearest inside pixel.

    image : (h, w, 3) uint8; inside : (h, w) bool → (h, w, 3) uint8
    """
    if not inside.any():
        return image
    _, (ri, ci) = ndimage.distance_transform_edt(~inside, return_indices=True)
    return image[ri, ci]
