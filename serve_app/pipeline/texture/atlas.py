"""The UV atlas (xatlas) and the texels it covers, each with its face and barycentrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, TypeVar

import numpy as np

from serve_app.pipeline.types import CancelToken

T = TypeVar("T")

#: Charts are kept small: xatlas grows a chart in time worse than linear in its size, so on a
#: smooth mesh (one chart per side) it takes seconds. Areas and lengths are of the mesh
#: scaled to a total area of 1.
MAX_CHART_AREA = 0.02
MAX_CHART_BOUNDARY = 0.5
#: The charts are grown once from their seeds, not grown again from moved seeds: that took
#: xatlas a third longer for the same packing.
CHART_ITERATIONS = 0
#: xatlas packs the charts on a grid this many times coarser than the texture.
PACK_REDUCTION = 2
#: Texels are claimed by a face within this distance (texels) of it, so that bilinear
#: sampling at a chart's rim reads the chart's own colours.
EDGE_REACH = 0.75


@dataclass
class Atlas:
    """A mesh cut along its chart seams, with texture coordinates.

    vertices : (n', 3) float32, the mesh's vertices, one copy per chart they lie in
    faces    : (m, 3) int64, the mesh's faces in the same order, onto ``vertices``
    uv       : (n', 2) float32, OpenGL convention (v = 0 at the image's bottom)
    source   : (n',) int64, the mesh vertex each vertex copies
    side     : the texture's side in texels
    seconds  : the CPU seconds xatlas took
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    source: np.ndarray
    side: int
    seconds: float = 0.0


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


def _submit(fn: Callable[..., T], *args: Any) -> tuple[ProcessPoolExecutor, Future[T]]:
    """``fn(*args)`` in the kept child process, and that process's pool. Under the lock, so
    that a cancelled bake deciding whether it may kill the child sees every call in it."""
    global _UNWRAPPER
    with _UNWRAPPER_LOCK:
        if _UNWRAPPER is None:
            _UNWRAPPER = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        return _UNWRAPPER, _UNWRAPPER.submit(fn, *args)


def _load_xatlas() -> None:
    import xatlas  # noqa: F401


def start_unwrapper() -> Future[None]:
    """Start the kept child process now, and its imports (numpy, xatlas: about a second),
    rather than in the first bake. Done when the child is ready."""
    return _submit(_load_xatlas)[1]


#: How often a bake waiting for its atlas looks at its cancel token (seconds).
CANCEL_POLL_S = 0.1


class PendingAtlas:
    """An atlas being made by :func:`unwrap_here` in the kept child process. xatlas holds
    the GIL for its whole call (seconds on a large mesh): in this process it would stop every
    other thread, a run's heartbeats among them, and its lease would run out while it works.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, side: int) -> None:
        self._pool, self._future = _submit(unwrap_here, vertices, faces, side)

    def result(self, cancel: CancelToken | None = None) -> Atlas:
        """Wait for the atlas. A cancel stops the wait within ``CANCEL_POLL_S``, and the child
        process with it when no other bake's atlas is in its hands (xatlas cannot be
        interrupted; the next bake starts a new child)."""
        while True:
            try:
                return self._future.result(timeout=CANCEL_POLL_S)
            except TimeoutError:
                if cancel is not None and cancel.cancelled:
                    self._abandon()
                    cancel.raise_if_cancelled()
            except BrokenProcessPool:
                self._forget_pool()
                raise

    def _forget_pool(self) -> None:
        global _UNWRAPPER
        with _UNWRAPPER_LOCK:
            if _UNWRAPPER is self._pool:
                _UNWRAPPER = None

    def _abandon(self) -> None:
        """Leave this atlas unmade: dropped if not started; if started, the child killed,
        unless another run's atlas waits in the same pool (it would be lost with it)."""
        global _UNWRAPPER
        if self._future.cancel():
            return
        # The executor keeps its calls in ``_pending_work_items`` and its workers in
        # ``_processes``, in every CPython that has ProcessPoolExecutor; it has no public
        # way to end a running call. Calls are submitted under the lock: once the pool is
        # forgotten here, none can join this one's.
        with _UNWRAPPER_LOCK:
            if len(getattr(self._pool, "_pending_work_items", {})) > 1:
                return
            if _UNWRAPPER is self._pool:
                _UNWRAPPER = None
        for process in list(getattr(self._pool, "_processes", {}).values()):
            process.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)


def unwrap_here(vertices: np.ndarray, faces: np.ndarray, side: int) -> Atlas:
    """Charts and their packing by xatlas, for a ``side`` × ``side`` texture with padding
    between charts.

    vertices : (n, 3) float; faces : (m, 3) int
    """
    import xatlas

    start = time.process_time()
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
    charts.max_iterations = CHART_ITERATIONS
    pack = xatlas.PackOptions()
    # packed at half the texture's resolution (its time grows with the atlas's area), with
    # half the padding: the same padding in the texture's texels
    pack.resolution = max(side // PACK_REDUCTION, 64)
    pack.padding = max(1, side // (512 * PACK_REDUCTION))
    pack.bilinear = True
    atlas.generate(charts, pack)
    mapping, indices, uv = atlas[0]
    # xatlas's UVs are normalised by its atlas's own width and height (about ``side`` / 2)
    return Atlas(
        vertices=np.ascontiguousarray(v[mapping], dtype=np.float32),
        faces=np.asarray(indices, dtype=np.int64),
        uv=np.clip(np.asarray(uv, dtype=np.float32), 0.0, 1.0),
        source=np.asarray(mapping, dtype=np.int64),
        side=side,
        seconds=time.process_time() - start,
    )


def rasterize(atlas: Atlas) -> Texels:
    """Every texel whose centre lies in a face of the atlas, and every texel within
    ``EDGE_REACH`` texels of the face of one of its 3 × 3 neighbours (the nearest such face;
    a texel inside a face wins over one near another's edge).

    The texels inside are found by Embree, one ray per texel centre that OpenCV's fill of the
    faces covers, at the atlas's triangles laid flat in texel space; the texels around them
    are vectorised over the eight neighbours."""
    side = atlas.side
    # texel space: x = column, y = row, texel (r, c) centred at (c + 0.5, r + 0.5)
    pts = np.column_stack([atlas.uv[:, 0] * side, (1.0 - atlas.uv[:, 1]) * side])
    edges = _EdgeFunctions(pts[atlas.faces].astype(np.float64))
    rows, cols, face, bary = _inside(edges, side)
    owner = np.full((side, side), -1, dtype=np.int32)
    owner[rows, cols] = face
    rim_rows, rim_cols, rim_face = _rim(owner, edges)
    return Texels(
        rows=np.concatenate([rows, rim_rows]),
        cols=np.concatenate([cols, rim_cols]),
        face=np.concatenate([face, rim_face]),
        bary=np.concatenate([bary, edges.barycentrics(rim_face, rim_cols + 0.5, rim_rows + 0.5)]),
    )


class _EdgeFunctions:
    """A face's edge functions in texel space: per edge (the one opposite each corner), the
    signed distance of a point to its line (positive inside) and its barycentric coordinate.
    """

    def __init__(self, tri: np.ndarray) -> None:
        self.tri = tri  # (m, 3, 2)
        a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
        double_area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (
            c[:, 0] - a[:, 0]
        )
        sign = np.where(double_area < 0, -1.0, 1.0)
        #: Faces of (almost) no area in the atlas hold no texel.
        self.usable = np.abs(double_area) > 1e-12
        scale = np.where(self.usable, np.abs(double_area), 1.0)
        # edge i from p to q: e(x, y) = sign · (q − p) × ((x, y) − p) = gx·x + gy·y + g0, which
        # is the barycentric coordinate times ``scale``, the distance times the edge's length
        self.coef = np.empty((len(tri), 3, 3))
        self.length = np.empty((len(tri), 3))
        for i, (p, q) in enumerate(((b, c), (c, a), (a, b))):
            gx = -(q[:, 1] - p[:, 1]) * sign
            gy = (q[:, 0] - p[:, 0]) * sign
            self.coef[:, i] = np.column_stack([gx, gy, -(gx * p[:, 0] + gy * p[:, 1])])
            self.length[:, i] = np.maximum(np.hypot(gx, gy), 1e-12)
        self.scale = scale

    def inside(self, face: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The least distance (texels) to the face's edges' lines, < 0 outside; −inf for a
        face of no area. face, x, y : (k,) → (k,) float64"""
        c = self.coef[face]
        d = (c[..., 0] * x[:, None] + c[..., 1] * y[:, None] + c[..., 2]) / self.length[face]
        return np.where(self.usable[face], d.min(axis=1), -np.inf)

    def barycentrics(self, face: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Clamped to the face (≥ 0, sum 1): (k, 3) float32."""
        c = self.coef[face]
        lam = (c[..., 0] * x[:, None] + c[..., 1] * y[:, None] + c[..., 2]) / self.scale[face, None]
        return _normalised(lam)


def _normalised(lam: np.ndarray) -> np.ndarray:
    """Barycentrics clamped to ≥ 0 and summing to 1: (k, 3) float32."""
    lam = np.clip(lam, 0.0, None).astype(np.float32)
    lam /= np.maximum(lam.sum(axis=1, keepdims=True), 1e-12)
    return lam


def _inside(
    edges: _EdgeFunctions, side: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The texels whose centre lies in a face: rows, cols, face (k,) int64, barycentrics
    (k, 3) float32. Rays are cast at the texels that OpenCV's fill of the faces covers (a
    texel it leaves out is one of the rim's)."""
    import cv2
    from embreex import rtcore_scene
    from embreex.mesh_construction import TriangleMesh

    tri = edges.tri
    covered = np.zeros((side, side), dtype=np.uint8)
    # OpenCV's pixel (x, y) is centred at (x, y) (texel space less a half), 2 fraction bits
    fixed = np.rint((tri[edges.usable] - 0.5) * 4).astype(np.int32)
    cv2.fillPoly(covered, list(fixed), 1, lineType=cv2.LINE_8, shift=2)
    rows, cols = np.nonzero(covered)
    flat = np.zeros((len(tri), 3, 3), dtype=np.float32)
    flat[:, :, :2] = tri
    scene = rtcore_scene.EmbreeScene()
    TriangleMesh(scene, flat)
    origins = np.empty((len(rows), 3), dtype=np.float32)
    origins[:, 0] = cols + 0.5
    origins[:, 1] = rows + 0.5
    origins[:, 2] = 1.0
    directions = np.zeros_like(origins)
    directions[:, 2] = -1.0
    hit = scene.run(origins, directions, output=1)
    face = np.asarray(hit["primID"], dtype=np.int64)
    found = np.flatnonzero(face >= 0)
    found = found[edges.usable[face[found]]]
    u = np.asarray(hit["u"], dtype=np.float32)[found]
    v = np.asarray(hit["v"], dtype=np.float32)[found]
    bary = _normalised(np.column_stack([1.0 - u - v, u, v]))
    return rows[found], cols[found], face[found], bary


def _rim(owner: np.ndarray, edges: _EdgeFunctions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The texels no face holds that lie within ``EDGE_REACH`` of the face of one of their
    3 × 3 neighbours, each with the nearest such face: rows, cols, face (k,) int64."""
    import cv2

    held = (owner >= 0).astype(np.uint8)
    rows, cols = np.nonzero(cv2.dilate(held, np.ones((3, 3), np.uint8)) > held)
    padded = np.pad(owner, 1, constant_values=-1)
    x, y = cols + 0.5, rows + 0.5
    best = np.full(len(rows), -np.inf)
    face = np.full(len(rows), -1, dtype=np.int64)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            near = padded[rows + 1 + dr, cols + 1 + dc]
            some = np.flatnonzero(near >= 0)
            d = edges.inside(near[some], x[some], y[some])
            better = d > best[some]
            best[some[better]] = d[better]
            face[some[better]] = near[some[better]]
    keep = best >= -EDGE_REACH
    return rows[keep], cols[keep], face[keep]
