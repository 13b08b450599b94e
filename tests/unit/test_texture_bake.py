"""The texture baker: known colours come back from the views that see them, what no view sees
is filled without black or background, and the camera convention holds."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.contracts.params import GenerationParams
from serve_app.contracts.stages import Stage
from serve_app.errors import JobCancelledError
from serve_app.pipeline.config import PipelineConfig
from serve_app.pipeline.texture import Baker, ViewName, load_texturer
from serve_app.pipeline.texture.views import align, as_views, camera_frame
from serve_app.pipeline.types import CancelToken, no_progress
from tests.texture_objects import (
    ALL_VIEWS,
    SIDE_VIEWS,
    bad_texels,
    box,
    photograph,
    photographs,
    sample_texture,
    score,
    sphere,
)

PARAMS = GenerationParams(quality=5)  # a 1024² texture
PHOTO = 512


def bake(obj, views, back="fill", params=PARAMS):
    return Baker(back=back).texture(
        photographs(obj, views, PHOTO), obj.mesh, params, no_progress, CancelToken()
    )


@pytest.fixture(scope="module")
def the_box():
    return box()


@pytest.fixture(scope="module")
def the_sphere():
    return sphere()


def test_a_box_from_four_side_views_has_its_colours_where_they_see(the_box):
    textured = bake(the_box, SIDE_VIEWS)
    result = score(the_box, textured, SIDE_VIEWS)
    assert result.within_seen >= 0.95
    assert bad_texels(textured.texture) == 0


def test_a_sphere_from_the_front_alone_has_its_colours_where_the_front_sees(the_sphere):
    textured = bake(the_sphere, (ViewName.FRONT,))
    result = score(the_sphere, textured, (ViewName.FRONT,))
    assert result.within_seen >= 0.96
    assert bad_texels(textured.texture) == 0


def test_six_views_colour_the_whole_sphere(the_sphere):
    textured = bake(the_sphere, ALL_VIEWS, params=GenerationParams(quality=3))
    assert score(the_sphere, textured, ALL_VIEWS).within >= 0.93  # a 512² texture
    assert bad_texels(textured.texture) == 0


def test_the_baked_mesh_keeps_positions_and_faces_and_splits_only_at_seams(the_box):
    textured = bake(the_box, (ViewName.FRONT,), params=GenerationParams(quality=1))
    assert textured.texture.shape == (256, 256, 3) and textured.texture.dtype == np.uint8
    assert textured.faces.shape == the_box.faces.shape
    corners = textured.vertices[textured.faces]
    assert np.allclose(corners, the_box.vertices[the_box.faces], atol=1e-6)
    assert textured.uv.shape == (len(textured.vertices), 2) and textured.uv.dtype == np.float32
    assert textured.uv.min() >= 0.0 and textured.uv.max() <= 1.0
    assert len(textured.vertices) < 3 * len(textured.faces)


def back_against_front_photo(obj, textured) -> float:
    """Mean colour distance, over points of the box's back, between the baked colour and the
    front photo at the same (x, y): what a mirrored front puts there."""
    import trimesh

    points, faces = trimesh.sample.sample_surface(obj.trimesh, 4000, seed=3)
    back = obj.trimesh.face_normals[faces][:, 2] < -0.9
    points, faces = points[back], faces[back]
    photo = photograph(obj, ViewName.FRONT, PHOTO)
    col, row = align(ViewName.FRONT, obj.vertices, photo.mask).to_pixels(points[:, 0], points[:, 1])
    front = photo.rgba[row.astype(int), col.astype(int), :3].astype(float)
    baked = sample_texture(textured, faces, points)
    return float(np.abs(baked - front).mean())


def test_mirror_puts_the_front_photo_on_the_back_and_fill_does_not(the_box):
    front_only = (ViewName.FRONT,)
    mirrored = bake(the_box, front_only, back="mirror")
    filled = bake(the_box, front_only)
    assert back_against_front_photo(the_box, mirrored) < 12
    assert back_against_front_photo(the_box, filled) > 30
    assert bad_texels(mirrored.texture) == 0


def test_views_are_aligned_by_their_silhouette_per_axis(the_box):
    mask = np.zeros((300, 500), dtype=bool)
    mask[40:240, 100:400] = True  # a stretched, shifted silhouette
    alignment = align(ViewName.RIGHT, the_box.vertices, mask)
    frame = camera_frame(ViewName.RIGHT)
    u, v = the_box.vertices @ frame[1], the_box.vertices @ frame[2]
    col, row = alignment.to_pixels(u, v)
    assert col.min() == pytest.approx(100) and col.max() == pytest.approx(400)
    assert row.min() == pytest.approx(40) and row.max() == pytest.approx(240)
    # image up is +Y: the box's top is the silhouette's top row
    top = the_box.vertices[:, 1] == the_box.vertices[:, 1].max()
    assert row[top].max() == pytest.approx(40)


def test_the_camera_convention():
    expected = {
        ViewName.FRONT: ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
        ViewName.RIGHT: ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
        ViewName.BACK: ((0, 0, -1), (-1, 0, 0), (0, 1, 0)),
        ViewName.LEFT: ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
        ViewName.TOP: ((0, 1, 0), (1, 0, 0), (0, 0, -1)),
        ViewName.BOTTOM: ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    }
    for name, axes in expected.items():
        frame = camera_frame(name)
        assert np.array_equal(frame, np.array(axes, dtype=float))
        # a right-handed camera: image right × image up points at the camera
        assert np.array_equal(np.cross(frame[1], frame[2]), frame[0])


def test_unknown_view_names_are_refused(the_box):
    with pytest.raises(ValueError, match="side"):
        as_views({"side": photograph(the_box, ViewName.FRONT, 64)})


def test_progress_stays_in_its_stage_and_cancel_stops_the_bake(the_box):
    seen: list[tuple[Stage, float]] = []
    views = photographs(the_box, (ViewName.FRONT,), 128)
    Baker().texture(
        views,
        the_box.mesh,
        GenerationParams(quality=1),
        lambda s, f: seen.append((s, f)),
        CancelToken(),
    )
    assert {s for s, _ in seen} == {Stage.TEXTURE_SYNTHESIS}
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0

    token = CancelToken()

    def cancel_midway(stage: Stage, fraction: float) -> None:
        if fraction > 0.3:
            token.cancel()

    with pytest.raises(JobCancelledError):
        Baker().texture(views, the_box.mesh, GenerationParams(quality=1), cancel_midway, token)


def test_the_texturer_is_chosen_in_config():
    config = PipelineConfig.model_validate({"texturer": "bake", "texture": {"back": "mirror"}})
    texturer = load_texturer(config.texturer, config.texture)
    assert isinstance(texturer, Baker) and texturer.back == "mirror"
    assert PipelineConfig().texture.back == "fill"
    with pytest.raises(ValueError, match="texturer"):
        PipelineConfig.model_validate({"texturer": "paint"})
    with pytest.raises(ValueError, match="back"):
        PipelineConfig.model_validate({"texture": {"back": "copy"}})
