"""What a view's camera sees of the mesh: a depth map by ray casting (Embree through trimesh),
and the depth test of surface points against it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Rays along the longest side of a view's depth map.
DEPTH_RESOLUTION = 512
#: A point is hidden when it lies this many depth-map cells, plus the depth its surface
#: climbs across one cell (its slope), behind the nearest surface.
DEPTH_TOLERANCE_CELLS = 1.0
MAX_SLOPE = 10.0


def ray_caster(vertices: np.ndarray, faces: np.ndarray) -> Any:
    """An Embree intersector over the mesh (trimesh's, with embreex)."""
    import trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False, validate=False)
    return RayMeshIntersector(mesh)


@dataclass
class DepthMap:
    """The depth of the nearest surface seen by an orthographic camera, on a grid.

    frame : (3, 3) float64, rows (toward the camera, image right, image up)
    depth : (h, w) float32, depth along ``frame[0]`` of the first hit; −inf where none
    Cell (row i, column j) is centred at ``u = u0 + (j + 0.5) · step``,
    ``v = v1 − (i + 0.5) · step``.
    """

    frame: np.ndarray
    u0: float
    v1: float
    step: float
    depth: np.ndarray

    def visible(
        self, u: np.ndarray, v: np.ndarray, d: np.ndarray, cosine: np.ndarray
    ) -> np.ndarray:
        """Whether each point is the nearest surface along its ray, within the tolerance.

        u, v, d : (k,) float32, the points' (on the mesh) image-plane coordinates and depth
        in this view's frame; cosine : (k,) float32, their surface's facing toward the
        camera (> 0) → (k,) bool
        """
        h, w = self.depth.shape
        j = np.clip(((u - self.u0) / self.step).astype(np.int64), 0, w - 1)
        i = np.clip(((self.v1 - v) / self.step).astype(np.int64), 0, h - 1)
        nearest = self.depth[i, j]
        cos = np.clip(cosine, 1e-3, 1.0)
        slope = np.minimum(np.sqrt(np.maximum(1.0 - cos * cos, 0.0)) / cos, MAX_SLOPE)
        tolerance = self.step * (DEPTH_TOLERANCE_CELLS + slope)
        return d >= nearest - tolerance


def depth_map(caster: Any, vertices: np.ndarray, frame: np.ndarray) -> DepthMap:
    """Cast one ray per cell from the camera side along ``-frame[0]``.

    vertices : (n, 3) float, the mesh's; frame : (3, 3) float64
    """
    u = vertices @ frame[1]
    v = vertices @ frame[2]
    d = vertices @ frame[0]
    extent = max(float(u.max() - u.min()), float(v.max() - v.min()), 1e-9)
    step = extent / DEPTH_RESOLUTION
    u0, v1 = float(u.min()) - step, float(v.max()) + step
    w = math.ceil((float(u.max()) + step - u0) / step)
    h = math.ceil((v1 - (float(v.min()) - step)) / step)
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    cu = u0 + (jj.ravel() + 0.5) * step
    cv = v1 - (ii.ravel() + 0.5) * step
    start = float(d.max()) + 0.1 * extent + 2.0 * step
    origins = cu[:, None] * frame[1] + cv[:, None] * frame[2] + start * frame[0]
    directions = np.broadcast_to(-frame[0], origins.shape)
    locations, index_ray, _ = caster.intersects_location(
        origins, np.ascontiguousarray(directions), multiple_hits=False
    )
    depth = np.full(h * w, -np.inf, dtype=np.float32)
    if len(index_ray):
        depth[index_ray] = locations @ frame[0]
    return DepthMap(frame=frame, u0=u0, v1=v1, step=step, depth=depth.reshape(h, w))
