"""The UV atlas (xatlas) and the texels it covers, each with its face and barycentrics."""

from __future__ import annotations

import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

#: Charts are kept small: xatlas grows a chart in time worse than linear in its size, so on a
#: smooth mesh (one chart per side) it takes seconds. Areas and lengths are of the mesh
#: scaled to a total area of 1.
MAX_CHART_AREA = 0.02
MAX_CHART_BOUNDARY = 0.5
#: Texels are claimed by a face within this distance (texels) of it, so that bilinear
#: sampling at a chart's rim reads the chart's own colours.
EDGE_REACH = 0.75
#: Faces rasterized per batch (bounds the memory of the candidate texels).
BATCH_FACES = 16_384


@dataclass
class Atlas:
    """A mesh cut along its chart seams, with texture coordinates.

    vertices : (n', 3) float32, the mesh's vertices, one copy per chart they lie in
    faces    : (m, 3) int64, the mesh's faces in the same order, onto ``vertices``
    uv       : (n', 2) float32, OpenGL convention (v = 0 at the image's bottom)
    source   : (n',) int64, the mesh vertex each vertex copies
    side     : the texture's side in texels
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    source: np.ndarray
    side: int


@dataclass
class Texels:
    """The texels the atlas's faces cover.

    rows, cols : (k,) int64, texel indices (row 0 at the image's top)
    face       : (k,) int64, the face each texel samples
    bary       : (k, 3) float32, its barycentric coordinates in that face (≥ 0, sum 1)
    """

    rows: np.ndarray
    cols: np.ndarray
    face: np.ndarray
    bary: np.ndarray


#: One kept child process for xatlas (made on first use, made again if it dies).
_UNWRAPPER: ProcessPoolExecutor | None = None
_UNWRAPPER_LOCK = threading.Lock()


def unwrap(vertices: np.ndarray, faces: np.ndarray, side: int) -> Atlas:
    """:func:`unwrap_here` in a kept child process. xatlas holds the GIL for its whole call
    (seconds on a large mesh): in this process it would stop every other thread, a run's
    heartbeats among them, and its lease would run out while it works."""
    global _UNWRAPPER
    with _UNWRAPPER_LOCK:
        if _UNWRAPPER is None:
            _UNWRAPPER = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        pool = _UNWRAPPER
    try:
        return pool.submit(unwrap_here, vertices, faces, side).result()
    except BrokenProcessPool:
        with _UNWRAPPER_LOCK:
            if _UNWRAPPER is pool:
                _UNWRAPPER = None
        raise


def unwrap_here(vertices: np.ndarray, faces: np.ndarray, side: int) -> Atlas:
    """Charts and their packing by xatlas, for a ``side`` × ``side`` texture with padding
    between charts.

    vertices : (n, 3) float; faces : (m, 3) int
    """
    import xatlas

    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    corners = v[f]
    area = (
        0.5
        * np.linalg.norm(
            np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1
        ).sum()
    )
    scaled = (v - v.mean(axis=0)) / max(float(np.sqrt(area)), 1e-12)
    atlas = xatlas.Atlas()
    atlas.add_mesh(scaled.astype(np.float32), f.astype(np.uint32))
    charts = xatlas.ChartOptions()
    charts.max_chart_area = MAX_CHART_AREA
    charts.max_boundary_length = MAX_CHART_BOUNDARY
    pack = xatlas.PackOptions()
    pack.resolution = side
    pack.padding = max(2, side // 512)
    pack.bilinear = True
    atlas.generate(charts, pack)
    mapping, indices, uv = atlas[0]
    # xatlas's UVs are normalised by its atlas's own width and height (about ``side``)
    return Atlas(
        vertices=np.ascontiguousarray(v[mapping], dtype=np.float32),
        faces=np.asarray(indices, dtype=np.int64),
        uv=np.clip(np.asarray(uv, dtype=np.float32), 0.0, 1.0),
        source=np.asarray(mapping, dtype=np.int64),
        side=side,
    )


def rasterize(atlas: Atlas) -> Texels:
    """Every texel whose centre lies in a face of the atlas, or within ``EDGE_REACH`` texels
    of one (a texel inside a face wins over one near another's edge). Vectorised over the
    texels of each face's bounding box, a batch of faces at a time."""
    side = atlas.side
    # texel space: x = column, y = row, texel (r, c) centred at (c + 0.5, r + 0.5)
    pts = np.column_stack([atlas.uv[:, 0] * side, (1.0 - atlas.uv[:, 1]) * side])
    tri = pts[atlas.faces].astype(np.float64)  # (m, 3, 2)
    owner = np.full((side, side), -1, dtype=np.int64)
    score = np.full((side, side), -np.inf, dtype=np.float32)
    bary = np.zeros((side, side, 3), dtype=np.float32)
    for start in range(0, len(tri), BATCH_FACES):
        _claim(tri[start : start + BATCH_FACES], start, side, owner, score, bary)
    rows, cols = np.nonzero(owner >= 0)
    return Texels(rows=rows, cols=cols, face=owner[rows, cols], bary=bary[rows, cols])


def _claim(
    tri: np.ndarray,
    offset: int,
    side: int,
    owner: np.ndarray,
    score: np.ndarray,
    bary: np.ndarray,
) -> None:
    """Write the texels of one batch of faces (``tri``: (b, 3, 2) texel coordinates)."""
    lo = np.floor(tri.min(axis=1) - 0.5 - EDGE_REACH).astype(np.int64) + 1
    hi = np.ceil(tri.max(axis=1) - 0.5 + EDGE_REACH).astype(np.int64) - 1
    lo = np.clip(lo, 0, side - 1)
    hi = np.clip(hi, 0, side - 1)
    width = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    height = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    counts = width * height
    face = np.repeat(np.arange(len(tri)), counts)
    if face.size == 0:
        return
    local = np.arange(face.size) - np.repeat(np.cumsum(counts) - counts, counts)
    col = lo[face, 0] + local % width[face]
    row = lo[face, 1] + local // width[face]
    # barycentrics from the edge functions; distance to each edge in texels
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    double_area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (
        c[:, 0] - a[:, 0]
    )
    sign = np.where(double_area < 0, -1.0, 1.0)
    double_area = np.abs(double_area)
    usable = double_area > 1e-12
    px = col + 0.5
    py = row + 0.5
    lam = np.empty((face.size, 3), dtype=np.float64)
    dist = np.empty((face.size, 3), dtype=np.float64)
    for i, (p, q) in enumerate(((b, c), (c, a), (a, b))):
        edge = (q[face, 0] - p[face, 0]) * (py - p[face, 1]) - (q[face, 1] - p[face, 1]) * (
            px - p[face, 0]
        )
        edge *= sign[face]
        length = np.hypot(q[:, 0] - p[:, 0], q[:, 1] - p[:, 1])
        lam[:, i] = edge / np.where(usable, double_area, 1.0)[face]
        dist[:, i] = edge / np.maximum(length, 1e-12)[face]
    inside = dist.min(axis=1)
    keep = (inside >= -EDGE_REACH) & usable[face]
    if not keep.any():
        return
    row, col, face, lam, inside = row[keep], col[keep], face[keep], lam[keep], inside[keep]
    # inner texels last, so that they win where batches or faces claim the same texel
    order = np.argsort(inside, kind="stable")
    order = order[inside[order] > score[row[order], col[order]]]
    row, col, face, lam, inside = row[order], col[order], face[order], lam[order], inside[order]
    lam = np.clip(lam, 0.0, None)
    lam /= np.maximum(lam.sum(axis=1, keepdims=True), 1e-12)
    owner[row, col] = face + offset
    score[row, col] = inside
    bary[row, col] = lam
