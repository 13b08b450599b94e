"""The camera convention: six orthographic views, and how a photo is aligned to a mesh.

Views are orthographic, Y up. ``front``: camera on +Z looking toward −Z; ``right``: camera on
+X; ``back``: camera on −Z; ``left``: camera on −X (image up = +Y for these four); ``top``:
camera on +Y, image up = −Z; ``bottom``: camera on −Y, image up = +Z. A photo is aligned to
the mesh by its subject's silhouette: the bounding box of its alpha is matched, per axis, to
the bounding box of the mesh's projection in that view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from serve_app.contracts.views import ViewName
from serve_app.errors import NoSubjectError
from serve_app.pipeline.types import CutOut

#: Per view: (toward the camera, image right, image up) as unit axes of the mesh's frame.
CAMERA_AXES: dict[ViewName, tuple[tuple[int, int, int], ...]] = {
    ViewName.FRONT: ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    ViewName.RIGHT: ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    ViewName.BACK: ((0, 0, -1), (-1, 0, 0), (0, 1, 0)),
    ViewName.LEFT: ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    ViewName.TOP: ((0, 1, 0), (1, 0, 0), (0, 0, -1)),
    ViewName.BOTTOM: ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
}


def camera_frame(name: ViewName) -> np.ndarray:
    """Rows (toward the camera, image right, image up): (3, 3) float64. A point ``p`` of the
    mesh is at depth ``frame[0] @ p`` (larger is nearer the camera), image ``(u, v) =
    (frame[1] @ p, frame[2] @ p)``."""
    return np.array(CAMERA_AXES[name], dtype=np.float64)


Views = Mapping[ViewName, CutOut]
"""The photos of one subject by view; ``front`` is the one a generator was given."""


def as_views(views: CutOut | Mapping[str, CutOut]) -> dict[ViewName, CutOut]:
    """One cut-out (the front) or a mapping of view names to cut-outs, checked by name."""
    if isinstance(views, CutOut):
        return {ViewName.FRONT: views}
    return {ViewName(name): cutout for name, cutout in views.items()}


def mirrored(cutout: CutOut) -> CutOut:
    """The cut-out flipped left to right: what the back camera sees of a subject whose back
    is its front's mirror image."""
    return CutOut(
        rgba=np.ascontiguousarray(cutout.rgba[:, ::-1]),
        mask=np.ascontiguousarray(cutout.mask[:, ::-1]),
        source=cutout.source,
    )


@dataclass(frozen=True)
class Alignment:
    """The affine map from a view's image plane (u, v in mesh units) to photo pixels.

    ``col = col0 + (u − u0) · sx`` and ``row = row0 + (v1 − v) · sy`` in continuous pixel
    coordinates (pixel ``i`` spans ``[i, i + 1)``).
    """

    u0: float
    v1: float
    col0: float
    row0: float
    sx: float
    sy: float

    def to_pixels(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(col, row) of image-plane points; u, v : (k,) float → two (k,) float32."""
        col = (self.col0 + (u - self.u0) * self.sx).astype(np.float32)
        row = (self.row0 + (self.v1 - v) * self.sy).astype(np.float32)
        return col, row


def silhouette_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) of the subject's pixels, ends exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise NoSubjectError("a view's subject mask is empty")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def align(name: ViewName, vertices: np.ndarray, mask: np.ndarray) -> Alignment:
    """Match the bounding box of the mesh's projection in view ``name`` to the bounding box
    of the photo's silhouette, per axis.

    vertices : (n, 3) float; mask : (h, w) bool
    """
    frame = camera_frame(name)
    u = vertices @ frame[1]
    v = vertices @ frame[2]
    u0, u1 = float(u.min()), float(u.max())
    v0, v1 = float(v.min()), float(v.max())
    row0, row1, col0, col1 = silhouette_box(mask)
    sx = (col1 - col0) / max(u1 - u0, 1e-12)
    sy = (row1 - row0) / max(v1 - v0, 1e-12)
    return Alignment(u0=u0, v1=v1, col0=float(col0), row0=float(row0), sx=sx, sy=sy)
