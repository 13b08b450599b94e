"""Texturing an uploaded mesh: its file read as it is, coloured from photos of its subject.

A ``texture-mesh`` job's run goes through the model stages like any other; its shape stage
reads the uploaded mesh (through the mesh tools' guards and readers) instead of generating
one, and the texturing stage colours it from the views. The model keeps the file's
geometry and axes: STL, OBJ and PLY are read as millimetres and written back as such, a
GLB's metres are converted to millimetres and written back as metres.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from serve_app.contracts.params import GenerationParams
from serve_app.contracts.stages import Stage
from serve_app.meshtools.config import MeshLimits
from serve_app.meshtools.readers import read_mesh
from serve_app.pipeline.texture import Texturer, load_texturer
from serve_app.pipeline.types import (
    CancelToken,
    CutOut,
    Mesh,
    ProgressCallback,
    TexturedMesh,
    no_progress,
)


def read_given_mesh(
    data: bytes, limits: MeshLimits | None = None, on_progress: ProgressCallback = no_progress
) -> Mesh:
    """The mesh file ``data`` as a mesh in millimetres, its equal vertices merged (an STL
    repeats them per triangle); the readers' 413/415/400 for a file they refuse."""
    on_progress(Stage.SHAPE_GENERATION, 0.0)
    loaded = read_mesh(data, limits)
    vertices, inverse = np.unique(loaded.vertices, axis=0, return_inverse=True)
    faces = inverse.reshape(-1)[loaded.faces].astype(np.int64)
    on_progress(Stage.SHAPE_GENERATION, 1.0)
    return Mesh(vertices=vertices.astype(np.float32), faces=faces)


def texture_given_mesh(
    mesh: Mesh,
    views: Mapping[str, CutOut],
    params: GenerationParams,
    on_progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
    texturer: Texturer | None = None,
) -> TexturedMesh:
    """``mesh`` coloured from ``views`` by ``texturer`` (default: the baker), with its own
    positions kept.

    The texturer sees the mesh placed in the pixel frame of the first view (the front when
    there is one): its bounding box on that view's subject's, per axis (+Y up, as the
    camera convention has it); the textured positions are mapped back exactly.
    """
    cancel = cancel or CancelToken()
    first = views.get("front") or next(iter(views.values()))
    frame = PhotoFrame.of(mesh.vertices, first.mask)
    placed = Mesh(vertices=frame.place(mesh.vertices), faces=mesh.faces)
    texturer = texturer or load_texturer()
    textured = texturer.texture(dict(views), placed, params, on_progress, cancel)
    textured.vertices = frame.restore(textured.vertices)
    return textured


class PhotoFrame:
    """An affine map per axis from a mesh's frame onto a photo's pixels (x → column,
    y → minus the row, z scaled with them), and back."""

    def __init__(self, origin: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> None:
        self.origin, self.scale, self.offset = origin, scale, offset

    @classmethod
    def of(cls, vertices: np.ndarray, mask: np.ndarray) -> PhotoFrame:
        """The frame that puts ``vertices``' X/Y bounding box on ``mask``'s subject's."""
        v = vertices.astype(np.float64)
        lo, hi = v.min(axis=0), v.max(axis=0)
        extent = np.maximum(hi - lo, 1e-9)
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        sx = (cols[-1] + 1 - cols[0]) / extent[0]
        sy = (rows[-1] + 1 - rows[0]) / extent[1]
        scale = np.array([sx, sy, float(np.sqrt(sx * sy))])
        # x = c0 at the left, y = -r1 at the bottom (its row is r1), z about 0
        offset = np.array([cols[0], -(rows[-1] + 1), 0.0])
        origin = np.array([lo[0], lo[1], (lo[2] + hi[2]) / 2.0])
        return cls(origin, scale, offset)

    def place(self, vertices: np.ndarray) -> np.ndarray:
        return ((vertices.astype(np.float64) - self.origin) * self.scale + self.offset).astype(
            np.float32
        )

    def restore(self, vertices: np.ndarray) -> np.ndarray:
        return ((vertices.astype(np.float64) - self.offset) / self.scale + self.origin).astype(
            np.float32
        )
