"""Preview images rendered off-screen by VTK: the model is there, textured the right way up."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from serve_app.contracts.meshtools import CustomMaterial
from serve_app.errors import ValidationFailedError
from serve_app.meshtools.materials import apply_material, resolve_material
from serve_app.meshtools.preview import render_preview
from serve_app.pipeline.types import TexturedMesh
from tests.meshes import cube, pipeline_mesh

QUADRANTS = {  # texture quadrant → colour, as the image shows it (row 0 at the top)
    "top left": (220, 30, 30),
    "top right": (30, 200, 30),
    "bottom left": (30, 30, 220),
    "bottom right": (230, 220, 30),
}


def quadrant_cube() -> TexturedMesh:
    """The 10 mm cube, centred, UVs from X and Y: its front (+Z) face shows the texture
    upright, its right (+X) face the texture's right column."""
    vertices, faces = cube((-5.0, -5.0, -5.0))
    texture = np.zeros((64, 64, 3), np.uint8)
    texture[:32, :32] = QUADRANTS["top left"]
    texture[:32, 32:] = QUADRANTS["top right"]
    texture[32:, :32] = QUADRANTS["bottom left"]
    texture[32:, 32:] = QUADRANTS["bottom right"]
    return TexturedMesh(
        vertices=vertices.astype(np.float32),
        faces=faces,
        uv=((vertices[:, :2] + 5.0) / 10.0).astype(np.float32),
        texture=texture,
        roughness=0.9,
    )


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image)


def dominant(rgb: np.ndarray) -> str:
    """Which of red, green, blue, yellow a lit colour is."""
    r, g, b = (float(c) for c in rgb[:3])
    if r > 1.5 * b and g > 1.5 * b and min(r, g) > 0.6 * max(r, g):
        return "yellow"
    return ("red", "green", "blue")[int(np.argmax([r, g, b]))]


def test_the_front_shows_the_texture_upright():
    image = pixels(render_preview(quadrant_cube(), 256, 256, 0.0, 0.0, "#ffffff"))
    assert image.shape == (256, 256, 3)
    assert dominant(image[96, 96]) == "red"  # top left
    assert dominant(image[96, 160]) == "green"  # top right
    assert dominant(image[160, 96]) == "blue"  # bottom left
    assert dominant(image[160, 160]) == "yellow"  # bottom right
    assert (image[0, 0] == 255).all() and (image[-1, -1] == 255).all()


def test_the_right_side_shows_the_textures_right_column():
    image = pixels(render_preview(quadrant_cube(), 256, 256, 90.0, 0.0, "#000000"))
    assert dominant(image[96, 128]) == "green"
    assert dominant(image[160, 128]) == "yellow"
    assert (image[0, 0] == 0).all()


def test_a_plain_colour_shows_near_the_centre_on_the_asked_background():
    red = apply_material(
        pipeline_mesh(),
        resolve_material(CustomMaterial(base_color="#c0392b", metallic=0, roughness=0.6)),
    )
    image = pixels(render_preview(red, 320, 240, 30.0, 20.0, "#203040"))
    assert image.shape == (240, 320, 3)
    centre = image[110:130, 150:170].reshape(-1, 3).mean(axis=0)
    assert dominant(centre) == "red" and centre[0] > 100
    assert tuple(image[0, 0]) == (0x20, 0x30, 0x40)
    assert tuple(image[-1, -1]) == (0x20, 0x30, 0x40)


def test_a_pipeline_model_is_drawn_textured_and_framed():
    image = pixels(render_preview(pipeline_mesh(), 256, 256, 30.0, 20.0, "#ffffff"))
    model = (image != 255).any(axis=2)
    assert 0.2 < model.mean() < 0.9  # neither blank nor all model
    rows, cols = np.flatnonzero(model.any(axis=1)), np.flatnonzero(model.any(axis=0))
    assert rows[0] > 0 and cols[0] > 0 and rows[-1] < 255 and cols[-1] < 255  # framed
    assert abs((rows[0] + rows[-1]) / 2 - 128) < 40 and abs((cols[0] + cols[-1]) / 2 - 128) < 40
    assert image[model].std(axis=0).mean() > 15  # the photo's colours, not a flat shade


def test_a_transparent_background_has_alpha_zero_off_the_model():
    image = pixels(render_preview(pipeline_mesh(), 200, 200, 0.0, 0.0, "transparent"))
    assert image.shape == (200, 200, 4)
    for corner in (image[0, 0], image[0, -1], image[-1, 0], image[-1, -1]):
        assert corner[3] == 0
    assert image[100, 100, 3] == 255
    assert 0.2 < (image[..., 3] == 255).mean() < 0.9


def test_metal_looks_different_from_matte():
    mesh = pipeline_mesh()
    matte = pixels(
        render_preview(apply_material(mesh, resolve_material("matte_plastic")), 128, 128)
    )
    metal = pixels(render_preview(apply_material(mesh, resolve_material("metal")), 128, 128))
    assert np.abs(matte.astype(int) - metal.astype(int)).mean() > 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 63},
        {"height": 2049},
        {"elevation_deg": 91.0},
        {"azimuth_deg": float("nan")},
        {"background": "red"},
        {"background": "#12345"},
    ],
)
def test_bad_arguments_are_422(kwargs):
    with pytest.raises(ValidationFailedError):
        render_preview(quadrant_cube(), **kwargs)
