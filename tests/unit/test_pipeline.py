"""The in-process pipeline end to end: real photos, progress, cancel, CLI."""

import io

import pytest
import trimesh

from serve_app.cli import main
from serve_app.contracts.params import OUTPUT_FORMATS, GenerationParams
from serve_app.contracts.stages import MODEL_STAGES, Stage, overall_progress
from serve_app.errors import InvalidImageError, JobCancelledError, NoSubjectError
from serve_app.pipeline.config import PipelineConfig
from serve_app.pipeline.runner import Pipeline
from serve_app.pipeline.types import CancelToken
from tests.gltf_validator import validate_glb
from tests.support import ellipse_cutout, encode, models_dir, photo, photo_bytes


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline.from_config(PipelineConfig(models_dir=models_dir()))


@pytest.mark.parametrize("name", ["chelsea", "astronaut", "coffee"])
def test_real_photo_becomes_a_closed_solid(pipeline, name):
    result = pipeline.run(photo_bytes(name, "JPEG"), GenerationParams(), "stl")
    tm = trimesh.load(io.BytesIO(result.data), file_type="stl")
    tm.merge_vertices()
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0
    assert set(result.timings) == {s.value for s in MODEL_STAGES}


@pytest.mark.parametrize("quality", range(1, 11))
def test_every_quality_level_gives_a_closed_solid(pipeline, quality):
    result = pipeline.run(encode(ellipse_cutout()), GenerationParams(quality=quality), "stl")
    tm = trimesh.load(io.BytesIO(result.data), file_type="stl")
    tm.merge_vertices()
    assert tm.is_watertight and tm.volume > 0


def test_progress_runs_through_the_four_stages_in_order(pipeline):
    seen: list[tuple[Stage, float]] = []
    pipeline.run(photo_bytes("coffee"), on_progress=lambda s, f: seen.append((s, f)))
    stages = [s for s, _ in seen]
    order = list(MODEL_STAGES)
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == order
    overall = [overall_progress(s, f) for s, f in seen]
    assert overall == sorted(overall)
    assert overall[0] == 0 and overall[-1] == 100


def test_cancel_mid_stage_stops_the_pipeline(pipeline):
    token = CancelToken()
    stages: list[Stage] = []

    def on_progress(stage: Stage, fraction: float) -> None:
        stages.append(stage)
        if stage is Stage.SHAPE_GENERATION and 0 < fraction < 0.8:
            token.cancel()

    with pytest.raises(JobCancelledError):
        pipeline.run(
            photo_bytes("astronaut"), GenerationParams(quality=10), "glb", on_progress, token
        )
    assert Stage.TEXTURE_SYNTHESIS not in stages and Stage.EXPORT not in stages


def test_cancel_before_start_does_no_work(pipeline):
    token = CancelToken()
    token.cancel()
    stages: list[Stage] = []
    with pytest.raises(JobCancelledError):
        pipeline.run(photo_bytes("coffee"), on_progress=lambda s, f: stages.append(s), cancel=token)
    assert Stage.SHAPE_GENERATION not in stages


def test_subjectless_photo_is_a_clear_error(pipeline):
    with pytest.raises(NoSubjectError):
        pipeline.run(encode(photo("coffee")[:40, :40] * 0 + 90))


def test_cli_writes_one_valid_file_per_image(tmp_path, capsys):
    paths = []
    for name in ("chelsea", "astronaut", "coffee"):
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(photo_bytes(name, "JPEG"))
        paths.append(str(path))
    cut = tmp_path / "cut.png"
    cut.write_bytes(encode(ellipse_cutout()))
    paths.append(str(cut))
    out = tmp_path / "out"
    for fmt in OUTPUT_FORMATS:
        images = paths if fmt == "glb" else [paths[0], paths[-1]]
        code = main(
            [
                "generate",
                *images,
                "-o",
                str(out),
                "--format",
                fmt,
                "--models-dir",
                str(models_dir()),
                "--quality",
                "2",
            ]
        )
        assert code == 0
    printed = capsys.readouterr().out
    assert "background_removal" in printed and "export" in printed
    for stem in ("chelsea", "astronaut", "coffee", "cut"):
        assert validate_glb(out / f"{stem}.glb")["numErrors"] == 0
    for stem in ("chelsea", "cut"):
        for suffix in ("_obj.zip", ".stl", ".ply", ".3mf", ".usdz"):
            assert (out / f"{stem}{suffix}").stat().st_size > 1000


def test_cli_bad_inputs_fail_with_one_line_and_nonzero_exit(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    code = main(
        [
            "generate",
            str(bad),
            str(tmp_path / "missing.png"),
            "-o",
            str(tmp_path),
            "--models-dir",
            str(models_dir()),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [
        f"error: {bad}: the PNG file is truncated or corrupt",
        f"error: {tmp_path / 'missing.png'}: No such file or directory",
    ]
    assert main(["generate", str(bad), "-o", str(tmp_path), "--quality", "0"]) == 2
    assert "quality" in capsys.readouterr().err


def test_invalid_image_error_is_400():
    assert InvalidImageError("x").status_code == 400
