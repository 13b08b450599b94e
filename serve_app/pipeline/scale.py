"""Scaling a mesh to requested dimensions in millimetres."""

from __future__ import annotations

import math

import numpy as np

from serve_app.contracts.params import Dimensions

#: Size of the longest side when no dimension is requested.
DEFAULT_LONGEST_MM = 100.0


def fit_to_dimensions(vertices: np.ndarray, dimensions: Dimensions) -> np.ndarray:
    """Scale and place ``vertices`` (n, 3) so the bounding box has the requested size.

    width ↔ X, height ↔ Y, depth ↔ Z, in millimetres. Unrequested axes follow the aspect
    ratio (they take the geometric mean of the requested axes' scales); with none requested
    the longest side becomes 100 mm. The model stands on Y = 0, centred in X and Z.
    Returns (n, 3) float32.
    """
    v = vertices.astype(np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    extent = np.maximum(hi - lo, 1e-9)
    wanted = (dimensions.width, dimensions.height, dimensions.depth)
    given = [(axis, size / extent[axis]) for axis, size in enumerate(wanted) if size is not None]
    if given:
        follow = math.exp(sum(math.log(s) for _, s in given) / len(given))
    else:
        follow = DEFAULT_LONGEST_MM / float(extent.max())
    scale = np.full(3, follow)
    for axis, s in given:
        scale[axis] = s
    centre = (lo + hi) / 2.0
    out = (v - centre) * scale
    out[:, 1] -= out[:, 1].min()
    return out.astype(np.float32)
