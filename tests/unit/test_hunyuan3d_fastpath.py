"""hunyuan3d's fast path on tiny random models: FlashVDM against dense decoding, turbo and
separately published VAE directories (network off), the defaults per device, and two runs at
once on one generator."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from serve_app.contracts.params import TUNABLES, GenerationParams
from serve_app.contracts.stages import Stage
from serve_app.errors import JobCancelledError, ModelUnavailableError
from serve_app.pipeline.config import Hunyuan3DSettings
from serve_app.pipeline.generators import hunyuan3d as hy
from serve_app.pipeline.generators.hunyuan3d import Hunyuan3DGenerator
from serve_app.pipeline.generators.hunyuan3d_profile import pick_decoder
from serve_app.pipeline.texture import load_texturer
from serve_app.pipeline.types import CancelToken, CutOut, Mesh, TexturedMesh, no_progress
from serve_app.registry.cache import cache_key
from serve_app.storage import ArtifactStore
from tests.mesh_agreement import agreement
from tests.support import ellipse_cutout
from tests.tiny_hunyuan3d import build_tiny_hunyuan3d, build_tiny_vae
from tests.unit.test_hunyuan3d import network_off  # noqa: F401 (a fixture)

#: Small enough for a 2-core CPU: a 33³ grid (FlashVDM: one level, 32³), two steps.
FAST = {"octree_resolution": 32, "steps": 2, "face_count": 4000}
#: The agreement targets: volume IoU at 128³, Chamfer distance / bounding-box diagonal.
MIN_IOU, MAX_CHAMFER = 0.97, 0.01


def load(path: Path, **settings: object) -> Hunyuan3DGenerator:
    return Hunyuan3DGenerator(Hunyuan3DSettings(model_path=path, device="cpu", **settings))


def cutout() -> CutOut:
    rgba = ellipse_cutout()
    return CutOut(rgba=rgba, mask=rgba[..., 3] > 0, source="alpha")


def run(generator: Hunyuan3DGenerator, on_progress=no_progress, cancel=None, **params) -> Mesh:
    p = GenerationParams(**{**FAST, **params})
    return generator.generate(cutout(), p, on_progress, cancel or CancelToken())


@pytest.fixture(scope="module")
def focused_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a geometry decoder that attends to few latents per point, as a
    trained one does (FlashVDM's key selection assumes it)."""
    return build_tiny_hunyuan3d(tmp_path_factory.mktemp("focused") / "model", focus=4.0)


@pytest.fixture(scope="module")
def decoders(focused_model: Path) -> dict[str, Hunyuan3DGenerator]:
    return {name: load(focused_model, decoder=name) for name in ("dense", "flashvdm")}


def test_each_decoder_gives_the_same_mesh_for_the_same_seed_and_has_its_own_version(
    decoders: dict[str, Hunyuan3DGenerator],
) -> None:
    for generator in decoders.values():
        first, again = run(generator, seed=3), run(generator, seed=3)
        assert np.array_equal(first.faces, again.faces)
        assert np.array_equal(first.vertices, again.vertices)
    dense, flashvdm = decoders["dense"].version, decoders["flashvdm"].version
    assert "+dense+standard+float32" in dense and "+flashvdm-mean+standard+" in flashvdm
    assert dense.split("+dense")[0] == flashvdm.split("+flashvdm")[0]  # same checkpoint, VAE


def test_the_decoders_agree_on_the_same_latents(decoders: dict[str, Hunyuan3DGenerator]) -> None:
    for seed in (0, 1, 2):
        params = GenerationParams(**{**FAST, "octree_resolution": 64, "seed": seed})
        dense, flash = (
            decoders[name].decode(cutout(), params, no_progress, CancelToken())
            for name in ("dense", "flashvdm")
        )
        assert dense.resolution == 64 and flash.resolution == 63  # FlashVDM's blocks of 4³
        found = agreement(dense, flash)
        assert found.iou >= MIN_IOU and found.chamfer <= MAX_CHAMFER, f"seed {seed}: {found}"


@pytest.mark.slow
def test_flashvdm_reports_every_chunk_of_every_level_in_order_within_the_decode_band(
    decoders: dict[str, Hunyuan3DGenerator],
) -> None:
    generator = decoders["flashvdm"]
    calls: list[int] = []
    hook = generator.pipeline.vae.geo_decoder.register_forward_pre_hook(
        lambda module, args: calls.append(1)
    )
    seen: list[float] = []
    try:
        run(generator, on_progress=lambda s, f: seen.append(f), octree_resolution=128, steps=1)
    finally:
        hook.remove()
    fractions = sorted(seen)
    assert seen == fractions and seen[0] == 0.0 and seen[-1] == 1.0
    decoding = [f for f in seen if hy.DECODE_BAND[0] < f < hy.DECODE_BAND[1]]
    # Level 0: 64 blocks of 16³; level 1 (126): the points near the surface, in chunks.
    assert len(calls) > 64 and len(decoding) >= len(calls) - 1


def test_cancel_during_flashvdm_decoding_stops_before_the_next_chunk(
    decoders: dict[str, Hunyuan3DGenerator],
) -> None:
    generator = decoders["flashvdm"]
    calls: list[float] = []
    seen: list[float] = []
    token = CancelToken()

    def on_progress(stage: Stage, fraction: float) -> None:
        seen.append(fraction)
        if fraction > hy.DECODE_BAND[0] and not token.cancelled:
            calls_at_cancel.append(len(calls))
            token.cancel()

    calls_at_cancel: list[int] = []
    hook = generator.pipeline.vae.geo_decoder.register_forward_hook(  # after each call
        lambda module, args, output: calls.append(1)
    )
    try:
        with pytest.raises(JobCancelledError):
            run(generator, on_progress=on_progress, cancel=token, octree_resolution=64)
    finally:
        hook.remove()
    (at_cancel,) = calls_at_cancel  # calls done when the cancel came; one was starting
    assert len(calls) == at_cancel + 1, "the geometry decoder ran again after the cancel"
    assert max(seen) < hy.DECODE_BAND[0] + 0.05
    assert len(run(generator).faces) > 0  # the generator serves the next run


def test_auto_takes_the_decoder_measured_faster_for_the_device_and_the_vae(
    tiny_hunyuan3d: Path,
) -> None:
    assert load(tiny_hunyuan3d).decoder == "dense"  # a tiny VAE on the CPU
    assert pick_decoder("auto", "cuda", 32) == "flashvdm"
    assert pick_decoder("auto", "cpu", 1024) == "flashvdm"  # the published width
    assert pick_decoder("dense", "cuda", 1024) == "dense"


def test_a_replica_without_cuda_decodes_at_octree_128_by_default(tiny_hunyuan3d: Path) -> None:
    generator = load(tiny_hunyuan3d)
    assert generator.overrides == {"octree_resolution": 128}
    for quality in (1, 5, 10):
        resolved = generator.resolve(GenerationParams(quality=quality))
        assert resolved.octree_resolution == 128
        assert resolved.face_count == TUNABLES["face_count"].at(quality)
    assert generator.resolve(GenerationParams(octree_resolution=256)).octree_resolution == 256
    by_quality = GenerationParams(quality=10).resolved_for("hunyuan3d")  # with CUDA
    assert by_quality.octree_resolution == 384


def test_a_turbo_directory_loads_offline_and_runs_five_steps_at_every_quality(
    tmp_path: Path,
    network_off: list[object],  # noqa: F811
) -> None:
    turbo = load(build_tiny_hunyuan3d(tmp_path / "turbo", variant="turbo"), variant="turbo")
    assert type(turbo.pipeline.scheduler).__name__ == "ConsistencyFlowMatchEulerDiscreteScheduler"
    assert turbo.version.endswith("+turbo+float32")
    for quality in (1, 10):
        resolved = turbo.resolve(GenerationParams(quality=quality))
        assert resolved.steps == 5 and resolved.guidance_scale == 5.0
    steps: list[float] = []
    mesh = run(turbo, on_progress=lambda s, f: steps.append(f), steps=None)
    assert len(mesh.faces) > 0 and network_off == []
    assert len({f for f in steps if hy.DENOISE_BAND[0] < f <= hy.DENOISE_BAND[1]}) == 5


def test_a_variant_the_checkpoint_contradicts_is_an_error_naming_the_config(
    tiny_hunyuan3d: Path, tmp_path: Path
) -> None:
    fast = build_tiny_hunyuan3d(tmp_path / "fast", variant="fast")
    with pytest.raises(ModelUnavailableError, match=f"{fast / 'config.yaml'} describes a guid"):
        load(fast)  # variant standard
    assert load(fast, variant="fast").version.endswith("+fast+float32")
    with pytest.raises(ModelUnavailableError, match="standard checkpoint .* variant is 'turbo'"):
        load(tiny_hunyuan3d, variant="turbo")


def test_a_separate_vae_loads_offline_in_place_of_the_checkpoints(
    tiny_hunyuan3d: Path,
    tmp_path: Path,
    network_off: list[object],  # noqa: F811
) -> None:
    from safetensors.torch import load_file

    vae_dir = build_tiny_vae(tmp_path / "vae")
    own, separate = load(tiny_hunyuan3d), load(tiny_hunyuan3d, vae_path=vae_dir)
    assert network_off == []
    assert "+vae-own+" in own.version and "+vae-own+" not in separate.version
    expected = load_file(vae_dir / "model.fp16.safetensors")["geo_decoder.output_proj.bias"]
    loaded = separate.pipeline.vae.geo_decoder.output_proj.bias.detach()
    assert torch.equal(loaded, expected.float())
    a, b = run(own, seed=4), run(separate, seed=4)
    assert len(b.faces) > 0
    assert a.vertices.shape != b.vertices.shape or not np.allclose(a.vertices, b.vertices)


def test_a_missing_or_unfit_vae_path_is_an_error_naming_it(
    tiny_hunyuan3d: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-vae"
    with pytest.raises(ModelUnavailableError, match=f"VAE directory {missing} does not exist"):
        load(tiny_hunyuan3d, vae_path=missing)
    vae_dir = build_tiny_vae(tmp_path / "vae")
    (vae_dir / "model.fp16.safetensors").unlink()
    with pytest.raises(ModelUnavailableError, match=f"no weights in {vae_dir}"):
        load(tiny_hunyuan3d, vae_path=vae_dir)
    config = build_tiny_vae(tmp_path / "vae2") / "config.yaml"
    config.write_text(config.read_text().replace("ShapeVAE", "os.system"))
    with pytest.raises(ModelUnavailableError, match=f"corrupt VAE config {config}"):
        load(tiny_hunyuan3d, vae_path=config.parent)


def test_the_cache_key_differs_between_decoders_and_a_dense_run_is_not_answered_from_flashvdm(
    decoders: dict[str, Hunyuan3DGenerator], tmp_path: Path
) -> None:
    store = ArtifactStore(tmp_path / "store")
    params = decoders["dense"].resolve(GenerationParams(**FAST))
    keys = {
        name: cache_key("ab" * 32, params, "u2netp", g.name, g.version)
        for name, g in decoders.items()
    }
    assert keys["dense"] != keys["flashvdm"]
    mesh = run(decoders["flashvdm"])
    textured = load_texturer().texture(cutout(), mesh, params, no_progress, CancelToken())
    assert isinstance(textured, TexturedMesh)
    store.put_mesh(keys["flashvdm"], textured.to_bytes())
    # The registry answers a run from the cache by its keyed ticket's mesh (Workers._from_cache).
    assert store.mesh_meta(keys["flashvdm"]) is not None
    assert store.mesh_meta(keys["dense"]) is None


class Overlap:
    """Two runs of one generator in two threads; the first waits in its CPU tail until the
    second has denoised a step, which it can only do if the device section is free."""

    def __init__(self, generator: Hunyuan3DGenerator, **params: object) -> None:
        self.generator = generator
        self.params = params
        self.second_denoising = threading.Event()
        self.events: list[tuple[str, float]] = []
        self.results: dict[str, Mesh | BaseException] = {}

    def progress(self, name: str, first: bool):
        def on_progress(stage: Stage, fraction: float) -> None:
            self.events.append((name, fraction))
            if not first and hy.DENOISE_BAND[0] < fraction <= hy.DENOISE_BAND[1]:
                self.second_denoising.set()
            if first and fraction == hy.EXTRACT_START:  # the device section is behind it
                assert self.second_denoising.wait(120), "the second run never got the device"

        return on_progress

    def run(self, name: str, first: bool, seed: int, cancel: CancelToken) -> None:
        try:
            self.results[name] = run(self.generator, self.progress(name, first), cancel, seed=seed)
        except BaseException as exc:  # recorded for the test to look at
            self.results[name] = exc

    def start(self, cancels: dict[str, CancelToken]) -> None:
        first = threading.Thread(target=self.run, args=("a", True, 1, cancels["a"]))
        first.start()
        while not any(name == "a" and f >= hy.DECODE_BAND[0] for name, f in self.events):
            if not first.is_alive():
                break
            threading.Event().wait(0.01)  # the first run is decoding: start the second
        second = threading.Thread(target=self.run, args=("b", False, 2, cancels["b"]))
        second.start()
        first.join(300)
        second.join(300)


def same_mesh(a: Mesh, b: Mesh) -> bool:
    return np.array_equal(a.faces, b.faces) and np.array_equal(a.vertices, b.vertices)


def test_two_overlapping_runs_both_complete_with_their_own_meshes(
    decoders: dict[str, Hunyuan3DGenerator],
) -> None:
    generator = decoders["dense"]
    alone = {"a": run(generator, seed=1), "b": run(generator, seed=2)}
    overlap = Overlap(generator)
    overlap.start({"a": CancelToken(), "b": CancelToken()})
    a, b = overlap.results["a"], overlap.results["b"]
    assert isinstance(a, Mesh) and isinstance(b, Mesh), overlap.results
    assert same_mesh(a, alone["a"]) and same_mesh(b, alone["b"])
    # The second run denoised while the first was in its CPU tail (extraction onwards).
    order = overlap.events
    tail = order.index(("a", hy.EXTRACT_START))
    done = order.index(("a", 1.0))
    assert any(n == "b" and f <= hy.DENOISE_BAND[1] for n, f in order[tail:done])


def test_a_cancel_of_one_overlapping_run_leaves_the_other_untouched(
    decoders: dict[str, Hunyuan3DGenerator],
) -> None:
    generator = decoders["dense"]
    alone = run(generator, seed=1)
    cancels = {"a": CancelToken(), "b": CancelToken()}
    overlap = Overlap(generator)
    original = overlap.progress

    def progress(name: str, first: bool):
        report = original(name, first)

        def on_progress(stage: Stage, fraction: float) -> None:
            report(stage, fraction)
            if name == "b" and fraction > hy.DENOISE_BAND[0]:
                cancels["b"].cancel()  # b is on the device while a finishes on the CPU

        return on_progress

    overlap.progress = progress  # type: ignore[method-assign]
    overlap.start(cancels)
    a, b = overlap.results["a"], overlap.results["b"]
    assert isinstance(b, JobCancelledError)
    assert isinstance(a, Mesh) and same_mesh(a, alone)
    assert len(run(generator, seed=2).faces) > 0


# -- on CUDA (bench/gpu.py runs these; skipped without a GPU) -----------------------------


def on_cuda(path: Path, **settings: object) -> Hunyuan3DGenerator:
    # fast-simplification: bare CUDA machines may lack pymeshlab.
    return Hunyuan3DGenerator(
        Hunyuan3DSettings(
            model_path=path, device="cuda", postprocess="fast-simplification", **settings
        )
    )


@pytest.mark.gpu
def test_cuda_decoders_agree_in_float16_and_auto_takes_flashvdm(focused_model: Path) -> None:
    assert on_cuda(focused_model).decoder == "flashvdm"
    dense, flash = (on_cuda(focused_model, decoder=d) for d in ("dense", "flashvdm"))
    assert dense.pipeline.dtype == torch.float16
    for seed in (0, 1, 2):
        params = GenerationParams(**{**FAST, "octree_resolution": 256, "seed": seed})
        a, b = (g.decode(cutout(), params, no_progress, CancelToken()) for g in (dense, flash))
        found = agreement(a, b)
        assert found.iou >= MIN_IOU and found.chamfer <= MAX_CHAMFER, f"seed {seed}: {found}"
    seen: list[float] = []
    token = CancelToken()

    def cancel_in_decoding(stage: Stage, fraction: float) -> None:
        seen.append(fraction)
        if fraction > hy.DECODE_BAND[0] + 0.01:
            token.cancel()

    with pytest.raises(JobCancelledError):
        run(flash, on_progress=cancel_in_decoding, cancel=token, octree_resolution=384)
    assert max(seen) < hy.DECODE_BAND[1]
    assert len(run(flash, octree_resolution=256).faces) > 0


@pytest.mark.gpu
def test_cuda_two_overlapping_runs_peak_within_a_tenth_of_one_run(focused_model: Path) -> None:
    generator = on_cuda(focused_model, decoder="flashvdm")
    run(generator, octree_resolution=256)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    alone = run(generator, seed=1, octree_resolution=256)
    one_run = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    overlap = Overlap(generator, octree_resolution=256)
    overlap.start({"a": CancelToken(), "b": CancelToken()})
    two_runs = torch.cuda.max_memory_allocated()
    a = overlap.results["a"]
    assert isinstance(a, Mesh) and isinstance(overlap.results["b"], Mesh), overlap.results
    assert two_runs <= 1.10 * one_run, (two_runs, one_run)
    assert len(a.faces) > 0 and len(alone.faces) > 0


@pytest.mark.gpu
def test_cuda_turbo_with_a_separate_vae(tmp_path: Path) -> None:
    turbo = build_tiny_hunyuan3d(tmp_path / "turbo", variant="turbo")
    generator = on_cuda(turbo, variant="turbo", vae_path=build_tiny_vae(tmp_path / "vae"))
    assert generator.resolve(GenerationParams(quality=10)).steps == 5
    assert len(run(generator, steps=None, octree_resolution=256).faces) > 0
