"""How closely two decodings of the same latents agree: volume IoU and symmetric Chamfer distance.

Used by the tests (dense against FlashVDM on the tiny model) and ``bench/gpu.py`` (the same at
a published-size VAE).

- **Volume IoU at 128³**: each decoding's inside (logit above the level) at the centres of a
  128³ voxel grid over the decoding cube, read from its own field by trilinear interpolation,
  which is the solid its marching-cubes mesh bounds (FlashVDM's unqueried points take the
  side of their queried neighbours, as extraction does).
- **Chamfer distance**: points sampled evenly on both meshes (seeded), the mean distance from
  each to the other mesh's nearest sample, averaged both ways; as a share of the diagonal
  of the two meshes' common bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serve_app.pipeline.generators.hunyuan3d_decode import Volume, extract_surface, fill_unqueried

VOXELS = 128
SAMPLES = 20_000


@dataclass(frozen=True)
class Agreement:
    iou: float
    chamfer: float  # share of the bounding-box diagonal

    def __str__(self) -> str:
        return f"IoU {self.iou:.4f}, Chamfer {100 * self.chamfer:.3f} % of the diagonal"


def inside_at_voxels(volume: Volume, level: float, voxels: int = VOXELS) -> np.ndarray:
    """(voxels, voxels, voxels) bool: the field above ``level`` at the voxel centres."""
    from scipy import ndimage

    logits = fill_unqueried(volume.logits, level)
    centres = (np.arange(voxels) + 0.5) / voxels  # 0..1 across the cube
    index = centres * volume.resolution
    grid = np.stack(np.meshgrid(index, index, index, indexing="ij"))
    values = ndimage.map_coordinates(logits, grid.reshape(3, -1), order=1, mode="nearest")
    return (values > level).reshape(voxels, voxels, voxels)


def agreement(a: Volume, b: Volume, level: float = 0.0, seed: int = 0) -> Agreement:
    """IoU of the two solids at 128³ and the symmetric Chamfer distance of their surfaces."""
    import trimesh
    from scipy.spatial import cKDTree

    inside_a, inside_b = inside_at_voxels(a, level), inside_at_voxels(b, level)
    union = np.logical_or(inside_a, inside_b).sum()
    iou = float(np.logical_and(inside_a, inside_b).sum() / union) if union else 1.0
    meshes = [trimesh.Trimesh(*extract_surface(v, level), process=False) for v in (a, b)]
    points = [
        trimesh.sample.sample_surface(m, SAMPLES, seed=seed + i)[0] for i, m in enumerate(meshes)
    ]
    a_to_b = cKDTree(points[1]).query(points[0])[0].mean()
    b_to_a = cKDTree(points[0]).query(points[1])[0].mean()
    both = np.vstack(points)
    diagonal = float(np.linalg.norm(both.max(axis=0) - both.min(axis=0)))
    return Agreement(iou=iou, chamfer=float((a_to_b + b_to_a) / 2 / diagonal))
