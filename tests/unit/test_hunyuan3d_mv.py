"""The hunyuan3d_mv generator on a tiny random Hunyuan3D-2mv (hy3dgen's multi-view classes):
the shape from four views, through the model builder as the service runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serve_app.contracts.params import GenerationParams
from serve_app.contracts.stages import Stage
from serve_app.errors import ValidationFailedError
from serve_app.pipeline.config import Hunyuan3DSettings, PipelineConfig
from serve_app.pipeline.generators import load_generator
from serve_app.pipeline.generators.base import MultiViewGenerator
from serve_app.pipeline.generators.hunyuan3d_mv import Hunyuan3DMVGenerator
from serve_app.pipeline.runner import ModelBuilder
from serve_app.pipeline.types import CancelToken, CutOut
from tests.support import ellipse_cutout
from tests.tiny_hunyuan3d import build_tiny_hunyuan3d

FAST = {"octree_resolution": 32, "steps": 3, "face_count": 4000, "seed": 3}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hunyuan3d_mv")
    return build_tiny_hunyuan3d(root / "hunyuan3d-dit-v2-mv-tiny", multi_view=True)


@pytest.fixture(scope="module")
def generator(model_dir: Path) -> Hunyuan3DMVGenerator:
    config = PipelineConfig(
        generators={"hunyuan3d_mv": Hunyuan3DSettings(model_path=model_dir, device="cpu")}
    )
    loaded = load_generator("hunyuan3d_mv", config)
    assert isinstance(loaded, Hunyuan3DMVGenerator)
    return loaded


def views() -> dict[str, CutOut]:
    """Four cut-outs of one object: wide from the front and back, narrow from the sides."""
    made = {}
    for name, (h, w) in {
        "front": (300, 240),
        "left": (300, 120),
        "back": (300, 240),
        "right": (300, 120),
    }.items():
        rgba = ellipse_cutout(h, w)
        made[name] = CutOut(rgba=rgba, mask=rgba[..., 3] > 0, source="alpha")
    return made


def test_it_is_a_multi_view_generator_with_its_own_version(
    generator: Hunyuan3DMVGenerator,
) -> None:
    assert isinstance(generator, MultiViewGenerator)
    assert generator.name == "hunyuan3d_mv" and generator.version.startswith("hunyuan3d_mv-")


def test_four_views_make_a_mesh_through_the_builder_and_other_views_change_it(
    generator: Hunyuan3DMVGenerator,
) -> None:
    builder = ModelBuilder(generator)
    stages: list[Stage] = []
    params = GenerationParams(quality=1, **FAST)
    four = builder.build(views(), params, lambda s, f: stages.append(s), CancelToken())
    assert len(four.faces) > 0 and np.isfinite(four.vertices).all()
    assert (
        four.meta["generator"] == "hunyuan3d_mv" and four.meta["views"] == "front,left,back,right"
    )
    assert stages.index(Stage.SHAPE_GENERATION) < stages.index(Stage.TEXTURE_SYNTHESIS)
    # The same seed from the front alone: the side views changed the shape.
    front = builder.build(views()["front"], params)
    assert four.vertices.shape != front.vertices.shape or not np.allclose(
        four.vertices, front.vertices
    )
    # Deterministic for the same views and seed.
    again = builder.build(views(), params)
    assert np.array_equal(again.faces, four.faces)


def test_without_a_front_the_views_are_refused(generator: Hunyuan3DMVGenerator) -> None:
    sides = {k: v for k, v in views().items() if k != "front"}
    with pytest.raises(ValidationFailedError, match="front"):
        generator.generate_views(sides, GenerationParams(**FAST), lambda s, f: None, CancelToken())


def test_the_mv_generator_takes_the_same_parameters_as_hunyuan3d() -> None:
    assert GenerationParams.parameters_of("hunyuan3d_mv") == GenerationParams.parameters_of(
        "hunyuan3d"
    )
