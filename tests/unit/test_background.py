"""Background removal with the local U²-Net-p model on real photos."""

import numpy as np
import pytest
from PIL import Image

from serve_app.errors import ModelUnavailableError, NoSubjectError
from serve_app.pipeline.background import RembgRemover
from tests.support import ellipse_cutout, models_dir, photo


@pytest.fixture(scope="module")
def remover() -> RembgRemover:
    return RembgRemover(models_dir())


@pytest.mark.parametrize("name", ["chelsea", "astronaut", "coffee"])
def test_real_photo_yields_a_subject(remover, name):
    cutout = remover.remove(Image.fromarray(photo(name)))
    h, w = photo(name).shape[:2]
    assert cutout.rgba.shape == (h, w, 4)
    assert cutout.source == "model"
    assert 0.1 < cutout.mask.mean() < 0.95
    assert (cutout.rgba[..., 3][cutout.mask] >= 128).all()
    assert (cutout.rgba[..., 3][~cutout.mask] < 128).all()


def test_astronaut_subject_is_the_person_not_the_background(remover):
    mask = remover.remove(Image.fromarray(photo("astronaut"))).mask
    # the face sits near (row 100, col 230); the flag's top-left corner is background
    assert mask[80:120, 200:260].mean() > 0.9
    assert mask[:60, :60].mean() < 0.1


def test_meaningful_alpha_is_kept_without_the_model(remover):
    rgba = ellipse_cutout()
    cutout = remover.remove(Image.fromarray(rgba))
    assert cutout.source == "alpha"
    assert np.array_equal(cutout.mask, rgba[..., 3] > 127)


def test_opaque_alpha_channel_goes_through_the_model(remover):
    rgba = np.dstack([photo("chelsea"), np.full(photo("chelsea").shape[:2], 255, np.uint8)])
    assert remover.remove(Image.fromarray(rgba)).source == "model"


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (256, 256), (128, 128, 128)),
        Image.new("RGB", (256, 256), (255, 255, 255)),
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)),
    ],
    ids=["grey", "white", "noise"],
)
def test_image_without_subject_is_a_clear_error(remover, image):
    with pytest.raises(NoSubjectError, match="no subject found") as info:
        remover.remove(image)
    assert info.value.status_code == 422


def test_missing_model_names_the_setting(tmp_path):
    with pytest.raises(ModelUnavailableError, match="make setup") as info:
        RembgRemover(tmp_path)
    assert info.value.details["setting"] == "pipeline.models_dir"


def test_wrong_model_file_is_refused(tmp_path):
    (tmp_path / "u2netp.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelUnavailableError, match="md5"):
        RembgRemover(tmp_path)
