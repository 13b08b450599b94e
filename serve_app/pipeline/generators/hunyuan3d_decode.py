"""hunyuan3d's volume decoding (hy3dgen's dense or FlashVDM decoder) and surface extraction.

Decoding runs on the model's device, one report and one cancel check before every call of the
VAE's geometry decoder (:class:`ChunkWatch`, a forward pre-hook). The dense decoder queries
every point of the (n + 1)³ grid in chunks of ``num_chunks``; FlashVDM (hy3dgen's
``FlashVDMVolumeDecoding``) decodes a coarse grid in blocks, then only the points near the
surface at each finer level, on a grid of its own (n' ≤ n), and leaves the others NaN. How
many points it queries depends on the surface (a noisy random field is near-surface almost
everywhere), so its progress follows an estimate: linear up to three quarters of it, then
ever closer to the end of the band, never back and never past it.

Extraction runs on the CPU (scikit-image's marching cubes, as hy3dgen's ``mc``) from the grid
copied off the device, so it can overlap the next run's device work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from serve_app.pipeline.types import CancelToken

DecoderName = Literal["flashvdm", "dense"]

#: hy3dgen's FlashVDM: the coarsest level is at least this fine, in blocks of 4³.
MIN_RESOLUTION = 63
MINI_GRID_NUM = 4
#: Estimated queries of a refined level, per (n + 1)² of its grid: the near-surface shell.
#: Measured on the tests' tiny model and a published-size VAE at octree 128-384: 5-30.
SHELL_QUERIES = 20.0
#: Where FlashVDM's progress leaves the straight line for the tail that never reaches 1.
LINEAR_SHARE = 0.75


def set_decoder(
    vae: Any, decoder: DecoderName, topk_mode: str, adaptive_kv_selection: bool
) -> None:
    """Give hy3dgen's VAE the chosen volume decoder (no download: this is the VAE's own
    ``enable_flashvdm_decoder``, not the pipeline's ``enable_flashvdm``)."""
    vae.enable_flashvdm_decoder(
        enabled=decoder == "flashvdm",
        adaptive_kv_selection=adaptive_kv_selection,
        topk_mode=topk_mode,
        mc_algo="mc",
    )


def level_resolutions(octree: int, adaptive: bool) -> list[int]:
    """The grid resolution of each level of hy3dgen's hierarchical decoders, coarsest first
    (its own rule: halve down to ``MIN_RESOLUTION``; FlashVDM rounds the coarsest to blocks)."""
    levels: list[int] = [octree] if octree < MIN_RESOLUTION else []
    while octree >= MIN_RESOLUTION:
        levels.append(octree)
        octree //= 2
    levels.reverse()
    if adaptive:
        levels[0] = round(levels[0] / MINI_GRID_NUM) * MINI_GRID_NUM - 1
        levels = [levels[0] * 2**i for i in range(len(levels))]
    return levels


def expected_queries(decoder: DecoderName, octree: int, adaptive: bool) -> float:
    """How many points the decoder will query, exactly (dense) or estimated (FlashVDM)."""
    if decoder == "dense":
        return float((octree + 1) ** 3)
    levels = level_resolutions(octree, adaptive)
    refined = sum(SHELL_QUERIES * (r + 1) ** 2 for r in levels[1:])
    return float((levels[0] + 1) ** 3 + refined)


class ChunkWatch:
    """A forward pre-hook for the geometry decoder: checks ``cancel`` and reports the share
    of queries done (0..1, never decreasing) before each call."""

    def __init__(
        self,
        expected: float,
        report: Callable[[float], None],
        cancel: CancelToken,
        exact: bool,
    ) -> None:
        self.expected = max(expected, 1.0)
        self.report = report
        self.cancel = cancel
        self.exact = exact
        self.queries = 0
        self.calls = 0
        self.fraction = 0.0

    def __call__(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        self.cancel.raise_if_cancelled()
        self.fraction = max(self.fraction, self.share_done())
        self.report(self.fraction)
        queries = kwargs.get("queries")
        self.queries += math.prod(queries.shape[:-1]) if queries is not None else 0
        self.calls += 1

    def share_done(self) -> float:
        """Queries done over those expected; past ``LINEAR_SHARE`` of an estimate, a tail
        that keeps rising but never reaches 1 (the same slope where they meet)."""
        done = self.queries / self.expected
        if self.exact or done <= LINEAR_SHARE:
            return min(1.0, done)
        tail = 1.0 - LINEAR_SHARE
        return min(1.0 - 1e-6, 1.0 - tail * math.exp(-(done - LINEAR_SHARE) / tail))


@dataclass
class Volume:
    """A decoded occupancy field: logits on a regular grid over the cube [-box_v, box_v]³.

    logits : (m, m, m) float32, m = resolution + 1, indexed (x, y, z); NaN where FlashVDM
    did not query (far from the surface)
    """

    logits: np.ndarray
    box_v: float

    @property
    def resolution(self) -> int:
        return int(self.logits.shape[0]) - 1


def decode_volume(
    vae: Any, latents: Any, box_v: float, octree: int, num_chunks: int, mc_level: float
) -> Volume:
    """The VAE's volume decoder over its latents (after the VAE's transformer), copied to
    the host as float32. Runs under ``torch.inference_mode`` on the latents' device."""
    import torch

    with torch.inference_mode():
        grid = vae.volume_decoder(
            latents,
            vae.geo_decoder,
            bounds=box_v,
            num_chunks=num_chunks,
            mc_level=mc_level,
            octree_resolution=octree,
            enable_pbar=False,
        )
        logits = grid[0].float().cpu().numpy()
    return Volume(logits=logits, box_v=box_v)


def fill_unqueried(logits: np.ndarray, level: float) -> np.ndarray:
    """``logits`` with every NaN region (points FlashVDM skipped) set to a value on the side
    of ``level`` that its queried neighbours are on, so marching cubes draws no surface
    where nothing was decoded. logits : (m, m, m) float32 → (m, m, m) float32"""
    unknown = np.isnan(logits)
    if not unknown.any():
        return logits
    from scipy import ndimage

    labels, count = ndimage.label(unknown)
    side = np.zeros(count + 1)
    for axis in range(3):
        for shift in (1, -1):
            neighbour = np.roll(logits, shift, axis=axis)
            edge = np.roll(np.ones(logits.shape, bool), shift, axis=axis)
            index: list[int | slice] = [slice(None)] * 3
            index[axis] = 0 if shift == 1 else -1
            edge[tuple(index)] = False  # np.roll wraps around: not a neighbour
            pair = unknown & edge & ~np.isnan(neighbour)
            np.add.at(side, labels[pair], np.sign(neighbour[pair] - level))
    magnitude = float(np.nanmax(np.abs(logits - level))) if (~unknown).any() else 1.0
    fill = np.where(side >= 0, magnitude, -magnitude) + level  # no neighbours: outside
    out = logits.copy()
    out[unknown] = fill[labels[unknown]].astype(np.float32)
    return out


def extract_surface(volume: Volume, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes (Lewiner) at ``level``, in the cube's coordinates, faces wound
    outwards as hy3dgen's export does; empty arrays when the field does not cross ``level``.

    → vertices (n, 3) float32, faces (m, 3) int64
    """
    from skimage import measure

    logits = fill_unqueried(volume.logits, level)
    if not (logits.min() < level < logits.max()):
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    vertices, faces, _normals, _values = measure.marching_cubes(logits, level, method="lewiner")
    spacing = 2.0 * volume.box_v / volume.resolution
    vertices = vertices * spacing - volume.box_v
    return vertices.astype(np.float32), np.ascontiguousarray(faces[:, ::-1], dtype=np.int64)
