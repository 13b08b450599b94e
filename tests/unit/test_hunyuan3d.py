"""The hunyuan3d generator on a tiny random Hunyuan3D-2 (hy3dgen's classes), network off."""

from __future__ import annotations

import io
import shutil
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from serve_app.cli import main
from serve_app.contracts.params import GenerationParams
from serve_app.contracts.stages import MODEL_STAGES, STAGE_BANDS, Stage, overall_progress
from serve_app.errors import (
    GpuOutOfMemoryError,
    JobCancelledError,
    ModelUnavailableError,
    NoSurfaceError,
)
from serve_app.pipeline.background import RembgRemover
from serve_app.pipeline.config import Hunyuan3DSettings
from serve_app.pipeline.export import export_mesh
from serve_app.pipeline.generators.hunyuan3d import Hunyuan3DGenerator
from serve_app.pipeline.runner import ModelBuilder, Pipeline
from serve_app.pipeline.types import CancelToken, CutOut, no_progress
from tests.gltf_validator import validate_glb
from tests.support import ellipse_cutout, models_dir, photo_bytes
from tests.tiny_hunyuan3d import build_tiny_hunyuan3d

#: Small enough for a 2-core CPU: a 33³ grid, four denoising steps.
FAST = {"octree_resolution": 32, "steps": 4, "face_count": 4000}


class NetworkAttempt(AssertionError):
    """Raised instead of opening a connection while the network is off."""


@pytest.fixture
def network_off(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every outgoing connection or name lookup fails (and is recorded)."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise NetworkAttempt(f"network access while the network is off: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts


def load(path: Path, **settings: object) -> Hunyuan3DGenerator:
    return Hunyuan3DGenerator(Hunyuan3DSettings(model_path=path, device="cpu", **settings))


@pytest.fixture(scope="module")
def generator(tiny_hunyuan3d: Path) -> Hunyuan3DGenerator:
    return load(tiny_hunyuan3d)


def cutout() -> CutOut:
    rgba = ellipse_cutout()
    return CutOut(rgba=rgba, mask=rgba[..., 3] > 0, source="alpha")


def run(
    generator: Hunyuan3DGenerator, on_progress=no_progress, cancel=None, **params: object
) -> trimesh.Trimesh:
    p = GenerationParams(**{**FAST, **params})
    mesh = generator.generate(cutout(), p, on_progress, cancel or CancelToken())
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)


def test_loads_from_the_directory_with_the_network_off(
    tiny_hunyuan3d: Path, network_off: list[object]
) -> None:
    generator = load(tiny_hunyuan3d)
    assert network_off == []
    assert generator.version.startswith("hunyuan3d-2+hy3dgen2.0.2+")
    assert generator.version.endswith("+float32")  # dtype auto on the CPU
    assert generator.pipeline.device.type == "cpu" and generator.pipeline.dtype == torch.float32
    mesh = run(generator)
    assert network_off == [] and len(mesh.faces) > 0


def test_version_follows_the_weights(tiny_hunyuan3d: Path, tmp_path: Path) -> None:
    other = build_tiny_hunyuan3d(tmp_path / "other", seed=1)
    assert load(other).version != load(tiny_hunyuan3d).version


def test_a_photo_becomes_four_valid_formats(generator: Hunyuan3DGenerator) -> None:
    pipeline = Pipeline(RembgRemover(models_dir()), ModelBuilder(generator))
    result = pipeline.run(photo_bytes("chelsea"), GenerationParams(**FAST), "glb")
    assert set(result.timings) == {s.value for s in MODEL_STAGES}
    assert result.mesh.meta["generator"] == "hunyuan3d"
    assert result.mesh.meta["generator_version"] == generator.version
    assert isinstance(result.mesh.meta["watertight"], bool)
    report = validate_glb(result.data)
    assert report["numErrors"] == 0, report["messages"]
    assert report["info"]["totalTriangleCount"] == len(result.mesh.faces)
    for fmt in ("obj", "stl", "ply"):  # 3MF and USDZ: test_export_3mf_usdz.py
        data = export_mesh(result.mesh, fmt)
        if fmt == "obj":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                name = next(n for n in archive.namelist() if n.endswith(".obj"))
                data = archive.read(name)
        loaded = trimesh.load(io.BytesIO(data), file_type=fmt, force="mesh")
        assert len(loaded.faces) == len(result.mesh.faces)
        assert np.ptp(loaded.vertices, axis=0).max() == pytest.approx(100.0, rel=1e-3)


def test_same_seed_same_mesh_another_seed_another_mesh(generator: Hunyuan3DGenerator) -> None:
    first, again, other = run(generator, seed=7), run(generator, seed=7), run(generator, seed=8)
    assert np.array_equal(first.faces, again.faces)
    assert np.array_equal(first.vertices, again.vertices)
    assert first.vertices.shape != other.vertices.shape or not np.allclose(
        first.vertices, other.vertices
    )


def test_progress_reports_every_step_in_order_within_the_shape_band(
    generator: Hunyuan3DGenerator,
) -> None:
    seen: list[tuple[Stage, float]] = []
    run(generator, on_progress=lambda s, f: seen.append((s, f)), steps=6)
    assert {s for s, _ in seen} == {Stage.SHAPE_GENERATION}
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    denoising = {f for f in fractions if 0.02 < f <= 0.60}
    assert len(denoising) == 6  # one report per denoising step
    lo, hi = STAGE_BANDS[Stage.SHAPE_GENERATION]
    assert all(lo <= overall_progress(s, f) <= hi for s, f in seen)


def test_cancel_stops_between_denoising_steps(generator: Hunyuan3DGenerator) -> None:
    token = CancelToken()
    seen: list[float] = []

    def on_progress(stage: Stage, fraction: float) -> None:
        seen.append(fraction)
        if len(seen) == 3:  # the report after the second step
            token.cancel()

    with pytest.raises(JobCancelledError) as info:
        run(generator, on_progress=on_progress, cancel=token, steps=10)
    assert len(seen) == 3, "a step ran after the cancel"
    # The error keeps none of the run's frames (they hold its tensors, on the GPU there).
    assert not [f for f in frames(info.value) if "hy3dgen" in f.f_code.co_filename]


def test_cancel_stops_volume_decoding_between_chunks(generator: Hunyuan3DGenerator) -> None:
    token = CancelToken()
    seen: list[float] = []

    def on_progress(stage: Stage, fraction: float) -> None:
        seen.append(fraction)
        if fraction > 0.6:
            token.cancel()

    with pytest.raises(JobCancelledError):
        run(generator, on_progress=on_progress, cancel=token, octree_resolution=64, num_chunks=1000)
    assert max(seen) < 0.65, "decoding went on after the cancel"


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    ],
    ids=["allocator", "cublas"],
)
def test_a_cuda_out_of_memory_is_a_retryable_error_and_the_generator_recovers(
    generator: Hunyuan3DGenerator, error: RuntimeError
) -> None:
    def exhaust(module: object, args: object) -> None:
        raise error

    hook = generator.pipeline.model.register_forward_pre_hook(exhaust)
    try:
        with pytest.raises(GpuOutOfMemoryError) as info:
            run(generator)
    finally:
        hook.remove()
    failure = info.value
    assert failure.status_code == 503 and failure.code == "gpu_out_of_memory"
    assert failure.details["retryable"] is True and "out of memory" in failure.message
    assert len(run(generator).faces) > 0


def test_other_runtime_errors_are_not_taken_for_out_of_memory(
    generator: Hunyuan3DGenerator,
) -> None:
    def broken(module: object, args: object) -> None:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    hook = generator.pipeline.model.register_forward_pre_hook(broken)
    try:
        with pytest.raises(RuntimeError, match="cannot be multiplied") as info:
            run(generator)
    finally:
        hook.remove()
    assert not [f for f in frames(info.value) if "hy3dgen" in f.f_code.co_filename]
    (note,) = info.value.__notes__  # where it was raised, kept as text for the log
    assert note.startswith("raised at:") and "hy3dgen" in note and "in broken" in note


def frames(error: BaseException) -> list[object]:
    """The frames an error's traceback holds."""
    tb, out = error.__traceback__, []
    while tb is not None:
        out.append(tb.tb_frame)
        tb = tb.tb_next
    return out


def test_no_surface_is_a_clear_error(tmp_path: Path) -> None:
    empty = load(build_tiny_hunyuan3d(tmp_path / "empty", level_offset=100.0))
    with pytest.raises(NoSurfaceError, match="found no surface at mc_level 0.0") as info:
        run(empty)
    assert info.value.status_code == 422 and info.value.code == "no_surface"


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_a_missing_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelUnavailableError, match=f"model directory {missing} does not exist"):
        load(missing)


def test_missing_weights_are_an_error_naming_the_file(tiny_hunyuan3d: Path, tmp_path: Path) -> None:
    model = copy_model(tiny_hunyuan3d, tmp_path / "model")
    (model / "model.fp16.safetensors").unlink()
    with pytest.raises(ModelUnavailableError, match="no weights in .*model.fp16.safetensors"):
        load(model)
    (model / "config.yaml").unlink()
    with pytest.raises(ModelUnavailableError, match=f"missing {model / 'config.yaml'}"):
        load(model)


def test_weights_without_the_image_encoder_are_an_error(
    tiny_hunyuan3d: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    model = copy_model(tiny_hunyuan3d, tmp_path / "model")
    weights = model / "model.fp16.safetensors"
    tensors = {k: v for k, v in load_file(weights).items() if not k.startswith("conditioner.")}
    save_file(tensors, weights)
    with pytest.raises(ModelUnavailableError, match=f"{weights} hold no conditioner tensors"):
        load(model)
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelUnavailableError, match=f"unreadable weights {weights}"):
        load(model)


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda text: text + "\n  : [unbalanced", "not valid YAML"),
        (lambda text: "- a list\n", "expected a mapping"),
        (lambda text: text.replace("hy3dgen.shapegen.models.ShapeVAE", "os.system"), "vae.target"),
        (
            lambda text: text.replace("model:\n  target", "dropped:\n  target", 1),
            "section 'model' with a 'target' class is missing",
        ),
    ],
)
def test_a_corrupt_config_is_an_error_naming_it(
    tiny_hunyuan3d: Path, tmp_path: Path, edit, why: str
) -> None:
    model = copy_model(tiny_hunyuan3d, tmp_path / "model")
    config = model / "config.yaml"
    config.write_text(edit(config.read_text()))
    with pytest.raises(ModelUnavailableError, match=f"corrupt config {config}: .*{why}"):
        load(model)


def test_a_config_naming_a_hub_encoder_is_refused_not_downloaded(
    tiny_hunyuan3d: Path, tmp_path: Path, network_off: list[object]
) -> None:
    import yaml

    model = copy_model(tiny_hunyuan3d, tmp_path / "model")
    config = model / "config.yaml"
    data = yaml.safe_load(config.read_text())
    kwargs = data["conditioner"]["params"]["main_image_encoder"]["kwargs"]
    del kwargs["config"]
    kwargs["version"] = "facebook/dinov2-giant"
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ModelUnavailableError, match="architecture inline"):
        load(model)
    assert network_off == []


def test_weights_that_do_not_fit_the_config_are_an_error(
    tiny_hunyuan3d: Path, tmp_path: Path
) -> None:
    model = copy_model(tiny_hunyuan3d, tmp_path / "model")
    config = model / "config.yaml"
    config.write_text(config.read_text().replace("hidden_size: 32\n", "hidden_size: 64\n", 1))
    with pytest.raises(ModelUnavailableError, match="cannot load .*model.fp16.safetensors"):
        load(model)


def test_cli_writes_a_valid_glb_with_hunyuan3d(
    tiny_hunyuan3d: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(photo_bytes("coffee"))
    out = tmp_path / "out"
    args = ["generate", str(photo), "-o", str(out), "--models-dir", str(models_dir())]
    hunyuan = ["--generator", "hunyuan3d", "--model-path", str(tiny_hunyuan3d), "--device", "cpu"]
    tuning = ["--steps", "3", "--seed", "5", "--octree-resolution", "32", "--mc-level", "0"]
    assert main([*args, *hunyuan, *tuning]) == 0
    assert validate_glb(out / "photo.glb")["numErrors"] == 0
    assert "photo.glb" in capsys.readouterr().out

    assert main([*args, "--generator", "hunyuan3d"]) == 2
    assert "needs --model-path" in capsys.readouterr().err
    assert main([*args, *hunyuan, "--steps", "0"]) == 2
    assert "steps: Input should be greater than or equal to 1" in capsys.readouterr().err
    assert main([*args, "--steps", "10"]) == 2
    assert "steps: not a parameter of generator 'inflate'" in capsys.readouterr().err
    assert main([*args, *hunyuan[:2], "--model-path", str(tmp_path / "none")]) == 2
    assert f"model directory {tmp_path / 'none'} does not exist" in capsys.readouterr().err


# -- on CUDA (bench/gpu.py runs these; skipped without a GPU) -----------------------------

#: A leak of one run's buffers (latents, the decoded grid) would be many MiB at octree 128.
LEAK_TOLERANCE = 256 << 10


def cuda_generator(path: Path, dtype: str = "auto") -> Hunyuan3DGenerator:
    # fast-simplification: bare CUDA machines may lack pymeshlab; clean-up is not tested here.
    return Hunyuan3DGenerator(
        Hunyuan3DSettings(
            model_path=path, device="cuda", dtype=dtype, postprocess="fast-simplification"
        )
    )


def cuda_in_use() -> tuple[int, int]:
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated(), torch.cuda.memory_reserved()


@pytest.mark.gpu
@pytest.mark.parametrize(("dtype", "expected"), [("auto", "float16"), ("float32", "float32")])
def test_cuda_gives_back_its_memory_after_runs_cancels_and_failures(
    tiny_hunyuan3d: Path, dtype: str, expected: str
) -> None:
    generator = cuda_generator(tiny_hunyuan3d, dtype)
    assert generator.pipeline.dtype == getattr(torch, expected)
    assert generator.version.endswith("+" + expected)
    assert len(run(generator, octree_resolution=128).faces) > 0  # warm-up: cuBLAS, scheduler
    allocated, reserved = cuda_in_use()

    torch.cuda.reset_peak_memory_stats()
    assert len(run(generator, octree_resolution=256).faces) > 0
    assert torch.cuda.max_memory_allocated() > allocated + (32 << 20)  # the run used memory
    after = cuda_in_use()
    assert after[0] - allocated < LEAK_TOLERANCE, "a run left tensors on the GPU"
    assert after[1] <= reserved + (32 << 20), "a run's cached blocks were not released"

    token = CancelToken()
    with pytest.raises(JobCancelledError):
        run(generator, on_progress=lambda s, f: f > 0.1 and token.cancel(), cancel=token)
    assert cuda_in_use()[0] - allocated < LEAK_TOLERANCE, "a cancelled run left tensors"

    calls: list[int] = []

    def fail_mid_decoding(module: object, args: object) -> None:
        calls.append(1)
        if len(calls) == 3:  # the decoded grid is partly filled on the GPU by now
            raise ValueError("a failure while decoding the volume")

    hook = generator.pipeline.vae.geo_decoder.register_forward_pre_hook(fail_mid_decoding)
    try:
        with pytest.raises(ValueError, match="while decoding"):
            run(generator, octree_resolution=256)
    finally:
        hook.remove()
    assert cuda_in_use()[0] - allocated < LEAK_TOLERANCE, "a failed run left tensors"


@pytest.mark.gpu
def test_a_real_cuda_out_of_memory_fails_the_run_and_the_next_run_succeeds(
    tiny_hunyuan3d: Path,
) -> None:
    generator = cuda_generator(tiny_hunyuan3d)
    assert len(run(generator, octree_resolution=64).faces) > 0  # warm-up
    allocated, _ = cuda_in_use()
    filler: list[torch.Tensor] = []
    try:
        block = 1 << 30
        while block >= 1 << 20:  # take all but < 1 MiB of the GPU
            try:
                filler.append(torch.empty(block, dtype=torch.uint8, device="cuda"))
            except torch.cuda.OutOfMemoryError:
                block //= 2
        with pytest.raises(GpuOutOfMemoryError) as info:
            run(generator, octree_resolution=256)
        assert info.value.details["retryable"] is True
    finally:
        filler.clear()
        torch.cuda.empty_cache()
    assert cuda_in_use()[0] - allocated < LEAK_TOLERANCE
    assert len(run(generator, octree_resolution=64).faces) > 0
