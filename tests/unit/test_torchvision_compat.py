"""The transforms provided for hy3dgen's conditioner where torchvision cannot be imported."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from serve_app.pipeline.generators import torchvision_compat as compat

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def conditioner_transform(size: int, module=compat) -> object:
    """What hy3dgen's ImageEncoder builds (conditioner.py), from ``module``'s classes."""
    return module.Compose(
        [
            module.Resize(size, module.InterpolationMode.BILINEAR, antialias=True),
            module.CenterCrop(size),
            module.Normalize(mean=MEAN, std=STD),
        ]
    )


def test_resize_keeps_the_aspect_ratio_and_truncates_like_torchvision() -> None:
    image = torch.rand(1, 3, 300, 451)
    assert compat.Resize(56)(image).shape == (1, 3, 56, 84)  # int(56 * 451 / 300) = 84
    assert compat.Resize(56)(image.transpose(2, 3)).shape == (1, 3, 84, 56)
    assert compat.Resize((20, 30))(image).shape == (1, 3, 20, 30)
    same = torch.rand(2, 3, 56, 56)
    assert compat.Resize(56)(same) is same


def test_resize_of_a_constant_image_is_the_constant() -> None:
    image = torch.full((1, 3, 97, 61), 0.25)
    assert torch.allclose(compat.Resize(40)(image), torch.tensor(0.25), atol=1e-6)


def test_centre_crop_takes_torchvision_offsets() -> None:
    image = torch.arange(7 * 9, dtype=torch.float32).reshape(1, 1, 7, 9)
    crop = compat.CenterCrop(4)(image)
    top, left = round((7 - 4) / 2), round((9 - 4) / 2)  # 2, 2 (round half to even)
    assert torch.equal(crop, image[..., top : top + 4, left : left + 4])
    padded = compat.CenterCrop(10)(image)
    assert padded.shape == (1, 1, 10, 10) and padded.sum() == image.sum()


def test_normalize_per_channel_in_the_input_dtype() -> None:
    image = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    out = compat.Normalize(MEAN, STD)(image)
    expected = (image - torch.tensor(MEAN, dtype=torch.float64)[:, None, None]) / torch.tensor(
        STD, dtype=torch.float64
    )[:, None, None]
    assert out.dtype == torch.float64 and torch.allclose(out, expected)
    assert not torch.equal(out, image)  # not in place


def test_hy3dgen_gets_the_transforms_and_nothing_else_sees_a_stand_in() -> None:
    shapegen = compat.import_shapegen()
    assert shapegen.Hunyuan3DDiTFlowMatchingPipeline is not None
    conditioner = sys.modules["hy3dgen.shapegen.models.conditioner"]
    if compat.provider == "compat":
        assert conditioner.transforms.Resize is compat.Resize
        assert "torchvision" not in sys.modules
        assert importlib.util.find_spec("torchvision") is None
    else:
        assert compat.provider == "torchvision"
        assert conditioner.transforms.Resize is not compat.Resize


def _devices_and_dtypes() -> list[tuple[str, torch.dtype]]:
    cases = [("cpu", torch.float32)]
    if torch.cuda.is_available():
        cases += [("cuda", torch.float32), ("cuda", torch.float16)]
    return cases


@pytest.mark.gpu
@pytest.mark.parametrize(("device", "dtype"), _devices_and_dtypes())
@pytest.mark.parametrize("shape", [(1, 3, 512, 512), (2, 3, 300, 451), (1, 3, 61, 97)])
def test_compat_transforms_equal_real_torchvision(
    device: str, dtype: torch.dtype, shape: tuple[int, ...]
) -> None:
    transforms = pytest.importorskip("torchvision.transforms")
    image = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    for size in (518, 224, 56):
        ours = conditioner_transform(size)(image)
        theirs = conditioner_transform(size, transforms)(image)
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        assert torch.equal(ours, theirs), (size, (ours - theirs).abs().max().item())
