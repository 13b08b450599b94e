"""The inflate generator: analytic profile, closed manifold meshes, budgets, cancel."""

import math

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage

from serve_app.contracts.params import GenerationParams
from serve_app.contracts.stages import Stage
from serve_app.errors import JobCancelledError, NoSubjectError
from serve_app.pipeline.config import PipelineConfig
from serve_app.pipeline.generators import load_generator
from serve_app.pipeline.generators.inflate import (
    FACE_BUDGET,
    INFLATION,
    InflateGenerator,
    clean_grid,
    corner_interior,
    solve_poisson,
)
from serve_app.pipeline.types import CancelToken, CutOut, no_progress


def cutout_from_mask(mask: np.ndarray) -> CutOut:
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[..., :3] = 128
    rgba[..., 3] = mask * 255
    return CutOut(rgba=rgba, mask=mask, source="alpha")


def disc(size: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    return (yy - c) ** 2 + (xx - c) ** 2 < radius**2


def generate(mask: np.ndarray, quality: int = 5) -> trimesh.Trimesh:
    mesh = InflateGenerator(device="cpu").generate(
        cutout_from_mask(mask), GenerationParams(quality=quality), no_progress, CancelToken()
    )
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)


def assert_closed_solid(tm: trimesh.Trimesh) -> None:
    merged = tm.copy()
    merged.merge_vertices(merge_tex=True, merge_norm=True)
    assert merged.is_watertight, "not watertight after merging vertices by position"
    assert merged.is_winding_consistent
    assert merged.volume > 0, "faces point inwards"
    # every edge is shared by exactly two faces: no pinched rim, no seam
    edges = np.sort(merged.edges, axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert set(counts.tolist()) == {2}


def test_poisson_on_disc_matches_analytic_solution():
    size, radius = 161, 70.0
    grid = disc(size, radius)
    interior = corner_interior(grid)
    u = solve_poisson(torch.from_numpy(interior)).numpy()
    yy, xx = np.mgrid[: size + 1, : size + 1]
    r = np.hypot(yy - size / 2, xx - size / 2)
    analytic = np.clip(radius**2 - r**2, 0, None) / 4.0  # −Δu = 1, u(R) = 0
    height = 2 * np.sqrt(u)
    expected = 2 * np.sqrt(analytic)
    assert height.max() == pytest.approx(radius, rel=0.03)
    inside = r < 0.9 * radius
    assert np.abs(height - expected)[inside].max() < 0.03 * radius


def test_disc_inflates_to_flattened_sphere():
    tm = generate(disc(300, 120), quality=8)
    assert_closed_solid(tm)
    width, height, depth = tm.extents
    assert width == pytest.approx(240, rel=0.03)
    assert height == pytest.approx(240, rel=0.03)
    assert depth == pytest.approx(2 * INFLATION * 120, rel=0.05)
    ellipsoid = 4 / 3 * math.pi * 120 * 120 * INFLATION * 120
    assert tm.volume == pytest.approx(ellipsoid, rel=0.05)


def test_ring_with_hole_is_closed_torus():
    mask = disc(300, 130) & ~disc(300, 50)
    tm = generate(mask)
    assert_closed_solid(tm)
    assert tm.euler_number == 0  # genus 1


def test_shapes_touching_at_a_corner_are_not_pinched():
    mask = np.zeros((120, 120), bool)
    mask[10:60, 10:60] = True
    mask[60:110, 60:110] = True  # touches the first square at one corner only
    tm = generate(mask)
    assert_closed_solid(tm)


def test_thin_strands_leave_no_zero_thickness_faces():
    mask = disc(200, 80)
    mask[100, :] = True  # a one-pixel line sticking out both sides
    mask[:, 100] = True
    tm = generate(mask)
    assert_closed_solid(tm)
    assert tm.area_faces.min() > 0


def test_diagonal_one_cell_bridge_is_thickened():
    mask = np.zeros((120, 120), bool)
    mask[10:60, 10:60] = True
    mask[61:110, 61:110] = True
    for k in range(10):  # a staircase one cell thick joining the two squares
        mask[58 + k // 2 + k % 2, 58 + k // 2] = True
    tm = generate(mask, quality=8)
    assert_closed_solid(tm)


@pytest.mark.parametrize("seed", range(12))
def test_ragged_random_silhouettes_give_closed_solids(seed):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((160, 160)), sigma=rng.uniform(3, 8))
    mask = field > np.quantile(field, rng.uniform(0.4, 0.7))
    tm = generate(mask, quality=int(rng.integers(3, 10)))
    assert_closed_solid(tm)


@pytest.mark.parametrize("quality", [1, 5, 10])
def test_face_count_follows_quality_budget(quality):
    tm = generate(disc(400, 180), quality=quality)
    assert 0.8 * FACE_BUDGET[quality] <= len(tm.faces) <= 1.2 * FACE_BUDGET[quality]


def test_clean_grid_removes_diagonal_contacts():
    grid = np.zeros((8, 8), bool)
    grid[1:4, 1:4] = True
    grid[4:7, 4:7] = True
    cleaned = clean_grid(grid)
    a, b, c, d = cleaned[:-1, :-1], cleaned[:-1, 1:], cleaned[1:, :-1], cleaned[1:, 1:]
    assert not (a & d & ~b & ~c).any()
    assert not (b & c & ~a & ~d).any()


def test_tiny_subject_is_refused():
    mask = np.zeros((100, 100), bool)
    mask[50, 50:52] = True
    with pytest.raises(NoSubjectError):
        generate(mask)


def test_cancel_stops_shape_generation_mid_stage():
    token = CancelToken()
    reports: list[float] = []

    def on_progress(stage: Stage, fraction: float) -> None:
        assert stage is Stage.SHAPE_GENERATION
        reports.append(fraction)
        if 0.0 < fraction < 0.8:
            token.cancel()

    with pytest.raises(JobCancelledError):
        InflateGenerator(device="cpu").generate(
            cutout_from_mask(disc(400, 180)), GenerationParams(quality=10), on_progress, token
        )
    assert max(reports) < 0.85, "work went on after the cancel"


def test_unknown_generator_is_a_clear_error():
    with pytest.raises(Exception, match="generator 'nope' is not enabled; enabled: inflate"):
        load_generator("nope", PipelineConfig())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_mesh_matches_cpu_mesh():
    cutout = cutout_from_mask(disc(300, 120))
    params = GenerationParams(quality=5)
    cpu = InflateGenerator(device="cpu").generate(cutout, params, no_progress, CancelToken())
    gpu = InflateGenerator(device="cuda").generate(cutout, params, no_progress, CancelToken())
    assert np.array_equal(cpu.faces, gpu.faces)
    assert np.abs(cpu.vertices - gpu.vertices).max() < 1e-2 * np.ptp(cpu.vertices)


def test_inflate_uses_one_cpu_thread_per_call_and_leaves_the_process_default():
    torch.set_num_threads(2)
    generator = InflateGenerator(device="cpu")
    seen: list[int] = []
    generator.generate(
        cutout_from_mask(disc(96, 30)),
        GenerationParams(quality=1),
        lambda stage, fraction: seen.append(torch.get_num_threads()),
        CancelToken(),
    )
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2  # a hunyuan3d beside it keeps every thread
