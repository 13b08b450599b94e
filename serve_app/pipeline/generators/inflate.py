"""The embedded ``inflate`` generator: silhouette → Poisson height field → watertight mesh.

The mask is resampled so that the mesh meets the quality's face budget, cleaned so that
every vertex of the result is manifold, and Δu = −1 is solved on the pixel corners inside
it (u = 0 on the rim) by conjugate gradients in torch. Heights ∝ √u give rounded,
volumetric shapes: a disc becomes a (flattened) sphere. Front and back sheets share the
rim vertices, so the surface is closed and consistently wound by construction.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from serve_app.contracts.params import GenerationParams, GeneratorName
from serve_app.errors import NoSubjectError
from serve_app.pipeline.generators.base import ShapeGenerator, ShapeProgress
from serve_app.pipeline.types import CancelToken, CutOut, Mesh

#: Target triangle count per quality level.
FACE_BUDGET = {
    1: 3_000,
    2: 6_000,
    3: 10_000,
    4: 16_000,
    5: 24_000,
    6: 36_000,
    7: 54_000,
    8: 80_000,
    9: 120_000,
    10: 180_000,
}
#: Largest side of the working grid, whatever the budget.
MAX_GRID_SIDE = 1024
#: Most a grid cell may be magnified over an image pixel.
MAX_UPSAMPLING = 8.0
#: Fewest subject pixels a solid is built from.
MIN_SUBJECT_PIXELS = 64
#: Depth of the inflated shape relative to a sphere (1.0 turns a disc into a ball).
INFLATION = 0.55
SMOOTHING_ITERATIONS = 8


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class InflateGenerator(ShapeGenerator):
    """Inflates a silhouette into a closed, rounded mesh. Needs no weights."""

    name = GeneratorName.INFLATE.value
    version = "inflate-1"
    overrides: Mapping[str, int | float] = MappingProxyType({})

    def __init__(self, device: str = "auto", cpu_threads: int = 1) -> None:
        self.device = pick_device(device)
        #: Intra-op threads while this generator runs on the CPU: the grids are small, so
        #: one thread is as fast and never fights the ONNX session or a neighbouring
        #: replica for cores. Set per call, not for the process, so another generator in
        #: the same replica (hunyuan3d on the CPU) keeps torch's default.
        self.cpu_threads = cpu_threads
        #: One run at a time: all of inflate's work is on its device, and the thread
        #: count is set per call.
        self._lock = threading.Lock()

    def make(self, cutout: CutOut, params: GenerationParams, progress: ShapeProgress) -> Mesh:
        with self._lock, self._threads():
            progress(0.0)
            grid, scale, origin = working_mask(cutout, FACE_BUDGET[params.quality])
            progress.check()
            interior = corner_interior(grid)
            u = solve_poisson(
                torch.from_numpy(interior).to(self.device),
                on_progress=lambda f: progress(0.05 + 0.75 * f),
                cancel=progress.cancel,
            )
            heights = INFLATION * 2.0 * torch.sqrt(torch.clamp(u, min=0.0))
            vertices, faces = height_field_mesh(grid, interior, heights)
            progress.check()
            progress(0.85)
            vertices = taubin_smooth(vertices, faces, SMOOTHING_ITERATIONS)
            progress(1.0)
            # grid corner (row, col) → image pixel coordinates, +Y up
            v = vertices.cpu().numpy().astype(np.float64)
            out = np.empty_like(v)
            out[:, 0] = v[:, 0] / scale + origin[1]
            out[:, 1] = -(-v[:, 1] / scale + origin[0])
            out[:, 2] = v[:, 2] / scale
            return Mesh(vertices=out.astype(np.float32), faces=faces.cpu().numpy().astype(np.int64))

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        """``cpu_threads`` torch threads for the call (a replica builds one job at a time)."""
        if self.device.type != "cpu":
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(self.cpu_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def working_mask(cutout: CutOut, face_budget: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Crop and resample the subject's alpha so its grid yields about ``face_budget`` faces.

    Returns the cleaned grid mask (h, w) bool with a 2-cell empty border, the scale from
    image pixels to grid cells and the image position (row, col) of grid corner (0, 0).
    """
    mask = cutout.mask
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise NoSubjectError("the subject mask is empty")
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    area = float(mask[r0:r1, c0:c1].sum())
    if area < MIN_SUBJECT_PIXELS:
        raise NoSubjectError(
            f"the subject covers only {int(area)} pixels; at least {MIN_SUBJECT_PIXELS} are needed"
        )
    scale = math.sqrt(face_budget / (4.0 * area))
    scale = min(scale, MAX_GRID_SIDE / max(r1 - r0, c1 - c0), MAX_UPSAMPLING)
    h = max(4, round((r1 - r0) * scale))
    w = max(4, round((c1 - c0) * scale))
    alpha = Image.fromarray(cutout.rgba[r0:r1, c0:c1, 3])
    resized = np.asarray(alpha.resize((w, h), Image.Resampling.BILINEAR)) > 127
    grid = np.pad(resized, 2)
    grid = clean_grid(grid)
    if grid.sum() < 8:
        raise NoSubjectError("the subject is too small or too thin to build a solid from")
    scale_r, scale_c = h / (r1 - r0), w / (c1 - c0)
    scale = (scale_r + scale_c) / 2.0
    return grid, scale, (float(r0) - 2.0 / scale, float(c0) - 2.0 / scale)


def clean_grid(grid: np.ndarray) -> np.ndarray:
    """Make the cell grid safe to mesh: no part thinner than 3 cells, no cells that touch
    only at a corner, and no edge between two subject cells whose two ends both lie on
    the rim (a one-cell-thick diagonal bridge).

    Afterwards every cell has an interior corner and every rim vertex joins one fan of
    cells, so the height-field mesh is a closed manifold with no zero-thickness parts.
    """
    grid = ndimage.binary_opening(grid, structure=np.ones((3, 3), bool))
    for _ in range(256):
        fill = _pinch_fill(grid) | _bridge_fill(grid)
        if not fill.any():
            return grid
        grid = grid | fill
    raise NoSubjectError("the subject's outline is too ragged to build a solid from")


def _pinch_fill(grid: np.ndarray) -> np.ndarray:
    """Cells that turn each pair of corner-touching cells into a 2×2 block."""
    a, b = grid[:-1, :-1], grid[:-1, 1:]
    c, d = grid[1:, :-1], grid[1:, 1:]
    main = a & d & ~b & ~c
    anti = b & c & ~a & ~d
    fill = np.zeros_like(grid)
    fill[:-1, 1:] |= main
    fill[1:, :-1] |= main
    fill[:-1, :-1] |= anti
    fill[1:, 1:] |= anti
    return fill


def _bridge_fill(grid: np.ndarray) -> np.ndarray:
    """Cells that make one end of every rim-to-rim edge between two subject cells interior."""
    inner = corner_interior(grid)
    # vertical edge between cells (i, j) and (i, j+1): corners (i, j+1) and (i+1, j+1)
    vertical = grid[:, :-1] & grid[:, 1:] & ~inner[:-1, 1:-1] & ~inner[1:, 1:-1]
    # horizontal edge between cells (i, j) and (i+1, j): corners (i+1, j) and (i+1, j+1)
    horizontal = grid[:-1, :] & grid[1:, :] & ~inner[1:-1, :-1] & ~inner[1:-1, 1:]
    fill = np.zeros_like(grid)
    vi, vj = np.nonzero(vertical)  # fill the 2×2 block around corner (i, j+1)
    for di, dj in ((-1, 0), (-1, 1), (0, 0), (0, 1)):
        fill[vi + di, vj + dj] = True
    hi, hj = np.nonzero(horizontal)  # fill the 2×2 block around corner (i+1, j)
    for di, dj in ((0, -1), (0, 0), (1, -1), (1, 0)):
        fill[hi + di, hj + dj] = True
    return fill & ~grid


def corner_interior(grid: np.ndarray) -> np.ndarray:
    """Corners (h+1, w+1) whose four surrounding cells all belong to the subject."""
    padded = np.pad(grid, 1).astype(np.int8)
    count = padded[:-1, :-1] + padded[:-1, 1:] + padded[1:, :-1] + padded[1:, 1:]
    return count == 4


def _neg_laplacian(u: torch.Tensor, interior: torch.Tensor) -> torch.Tensor:
    """−Δu with the 5-point stencil, u held at 0 outside ``interior``."""
    p = torch.nn.functional.pad(u, (1, 1, 1, 1))
    lap = 4.0 * u - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:]
    return lap * interior


def solve_poisson(
    interior: torch.Tensor,
    on_progress=lambda f: None,
    cancel: CancelToken | None = None,
    tol: float = 1e-6,
) -> torch.Tensor:
    """Solve −Δu = 1 on ``interior`` corners, u = 0 elsewhere, by conjugate gradients.

    interior : (h, w) bool → u : (h, w) float32, in squared grid cells
    A coarse solve seeds the fine one, so iterations grow slowly with the grid.
    """
    mask = interior.to(torch.float32)
    h, w = mask.shape
    if min(h, w) >= 48:
        coarse = solve_poisson(interior[::2, ::2], cancel=cancel, tol=tol * 10) * 4.0
        u = torch.nn.functional.interpolate(coarse[None, None], size=(h, w), mode="bilinear")
        u = u[0, 0] * mask
    else:
        u = torch.zeros_like(mask)
    b = mask
    r = b - _neg_laplacian(u, mask)
    p = r.clone()
    rs = torch.sum(r * r)
    target = (tol * tol) * torch.sum(b * b)
    max_iter = 4 * (h + w) + 50
    for it in range(max_iter):
        if it % 16 == 0:
            if cancel is not None:
                cancel.raise_if_cancelled()
            if bool(rs <= target):
                break
            on_progress(min(1.0, it / max_iter))
        ap = _neg_laplacian(p, mask)
        alpha = rs / torch.sum(p * ap)
        u = u + alpha * p
        r = r - alpha * ap
        rs_new = torch.sum(r * r)
        p = r + (rs_new / rs) * p
        rs = rs_new
    on_progress(1.0)
    return u


def height_field_mesh(
    grid: np.ndarray, interior: np.ndarray, heights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Front and back sheets over the subject's cells, joined at the rim.

    grid : (h, w) bool cells; interior : (h+1, w+1) bool corners; heights : (h+1, w+1)
    Returns vertices (n, 3) float32 as (col, −row, ±height) and faces (m, 3) int64.
    """
    device = heights.device
    g = torch.from_numpy(grid).to(device)
    inner = torch.from_numpy(interior).to(device)
    padded = torch.nn.functional.pad(g.to(torch.int8), (1, 1, 1, 1))
    used = (padded[:-1, :-1] + padded[:-1, 1:] + padded[1:, :-1] + padded[1:, 1:]) > 0

    rows, cols = torch.nonzero(used, as_tuple=True)
    front_index = torch.full(used.shape, -1, dtype=torch.int64, device=device)
    front_index[rows, cols] = torch.arange(rows.numel(), device=device)
    brows, bcols = torch.nonzero(inner, as_tuple=True)
    back_index = front_index.clone()
    back_index[brows, bcols] = rows.numel() + torch.arange(brows.numel(), device=device)

    z = heights.to(torch.float32)
    front = torch.stack([cols.float(), -rows.float(), z[rows, cols]], dim=1)
    back = torch.stack([bcols.float(), -brows.float(), -z[brows, bcols]], dim=1)
    vertices = torch.cat([front, back])

    ci, cj = torch.nonzero(g, as_tuple=True)
    main = inner[ci, cj] | inner[ci + 1, cj + 1]

    def sheet(index: torch.Tensor, flip: bool) -> torch.Tensor:
        c00, c01 = index[ci, cj], index[ci, cj + 1]
        c10, c11 = index[ci + 1, cj], index[ci + 1, cj + 1]
        t1 = torch.where(
            main[:, None], torch.stack([c00, c10, c11], 1), torch.stack([c00, c10, c01], 1)
        )
        t2 = torch.where(
            main[:, None], torch.stack([c00, c11, c01], 1), torch.stack([c01, c10, c11], 1)
        )
        tris = torch.cat([t1, t2])
        return tris.flip(1) if flip else tris

    faces = torch.cat([sheet(front_index, False), sheet(back_index, True)])
    return vertices, faces


def taubin_smooth(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    iterations: int,
    lam: float = 0.5,
    mu: float = -0.53,
) -> torch.Tensor:
    """Taubin λ|μ smoothing with uniform weights: rounds the rim's staircase, keeps volume.

    vertices : (n, 3) float32; faces : (m, 3) int64, a closed manifold (each edge is
    walked once in each direction, so the half-edges list every neighbour once)
    → (n, 3) float32
    """
    src = faces.reshape(-1)
    dst = faces[:, [1, 2, 0]].reshape(-1)
    degree = torch.zeros(vertices.shape[0], device=vertices.device)
    degree.index_add_(0, src, torch.ones_like(src, dtype=degree.dtype))
    degree = degree.clamp(min=1.0)[:, None]
    v = vertices
    for _ in range(iterations):
        for factor in (lam, mu):
            total = torch.zeros_like(v).index_add_(0, src, v[dst])
            v = v + factor * (total / degree - v)
    return v
