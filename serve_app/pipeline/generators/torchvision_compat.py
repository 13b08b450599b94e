"""The few ``torchvision.transforms`` that hy3dgen's image conditioner uses, for machines
where torchvision cannot be imported.

hy3dgen's ``ImageEncoder`` (``hy3dgen/shapegen/models/conditioner.py``) imports
``torchvision.transforms`` when ``hy3dgen.shapegen`` is imported, and builds
``Compose([Resize(size, InterpolationMode.BILINEAR, antialias=True), CenterCrop(size),
Normalize(mean, std)])`` over batched image tensors. PyPI's Linux torchvision wheels are
CUDA builds that fail to import next to a CPU-only torch ("operator torchvision::nms does not
exist"); a CUDA image has a working one.

:func:`import_shapegen` imports hy3dgen's shape code. Where the real torchvision imports,
it is used and nothing here is installed. Where it does not, this module's ``transforms`` are
registered in ``sys.modules`` as ``torchvision`` and ``torchvision.transforms`` while hy3dgen
is imported, and removed afterwards: tensor-only versions of those four classes with torchvision's
semantics (same output size rule, ``interpolate(..., antialias=True)``, the same crop offsets,
``(x - mean) / std`` in the input's dtype). ``tests/unit/test_torchvision_compat.py`` checks them
against the real torchvision where it exists (marked ``gpu``: CUDA machines have one).
"""

from __future__ import annotations

import enum
import importlib
import importlib.machinery
import logging
import sys
import types
from collections.abc import Callable, Sequence

import torch

logger = logging.getLogger(__name__)

#: Who provided the transforms to hy3dgen: "torchvision" or "compat" (None before the import).
provider: str | None = None


class InterpolationMode(enum.Enum):
    """The interpolation modes the conditioner may name (values as torchvision's)."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _size_pair(size: int | Sequence[int]) -> tuple[int, int] | int:
    if isinstance(size, int):
        return size
    values = tuple(int(s) for s in size)
    if len(values) == 1:
        return values[0]
    if len(values) != 2:
        raise ValueError(f"size must be an int or (h, w), got {size!r}")
    return values[0], values[1]


class Resize:
    """Resize (…, C, H, W) float tensors: an int resizes the shorter side to it, keeping the aspect
    ratio (the longer side truncated, as torchvision does); (h, w) resizes to exactly that."""

    def __init__(
        self,
        size: int | Sequence[int],
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
        max_size: int | None = None,
        antialias: bool | None = True,
    ) -> None:
        if max_size is not None:
            raise NotImplementedError("max_size is not provided by the compatibility transforms")
        self.size = _size_pair(size)
        self.interpolation = InterpolationMode(interpolation)
        self.antialias = bool(antialias)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if not isinstance(self.size, int):
            return self.size
        short, long = (height, width) if height <= width else (width, height)
        new_short, new_long = self.size, int(self.size * long / short)
        return (new_short, new_long) if height <= width else (new_long, new_short)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if not image.is_floating_point():
            raise TypeError(f"Resize needs a float tensor, got {image.dtype}")
        height, width = image.shape[-2:]
        out_h, out_w = self.output_size(int(height), int(width))
        if (out_h, out_w) == (height, width):
            return image
        batch = image.reshape(-1, *image.shape[-3:]) if image.ndim != 4 else image
        # torchvision interpolates half precision in float32 and casts back
        if batch.dtype not in (torch.float32, torch.float64):
            batch = batch.to(torch.float32)
        mode = self.interpolation.value
        antialias = self.antialias and mode in ("bilinear", "bicubic")
        resized = torch.nn.functional.interpolate(
            batch,
            size=(out_h, out_w),
            mode=mode,
            align_corners=False if mode != "nearest" else None,
            antialias=antialias,
        )
        return resized.reshape(*image.shape[:-2], out_h, out_w).to(image.dtype)


class CenterCrop:
    """Crop the centre (h, w) of (…, H, W) tensors, zero-padding a smaller image first."""

    def __init__(self, size: int | Sequence[int]) -> None:
        pair = _size_pair(size)
        self.size = (pair, pair) if isinstance(pair, int) else pair

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        crop_h, crop_w = self.size
        height, width = int(image.shape[-2]), int(image.shape[-1])
        if crop_h > height or crop_w > width:
            pad_left = (crop_w - width) // 2 if crop_w > width else 0
            pad_top = (crop_h - height) // 2 if crop_h > height else 0
            pad_right = (crop_w - width + 1) // 2 if crop_w > width else 0
            pad_bottom = (crop_h - height + 1) // 2 if crop_h > height else 0
            image = torch.nn.functional.pad(image, (pad_left, pad_right, pad_top, pad_bottom))
            height, width = int(image.shape[-2]), int(image.shape[-1])
            if (crop_h, crop_w) == (height, width):
                return image
        top = int(round((height - crop_h) / 2.0))
        left = int(round((width - crop_w) / 2.0))
        return image[..., top : top + crop_h, left : left + crop_w]


class Normalize:
    """``(x - mean) / std`` per channel of (…, C, H, W) float tensors; returns a new tensor."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        self.mean = list(mean)
        self.std = list(std)
        self.inplace = inplace

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if not image.is_floating_point():
            raise TypeError(f"Normalize needs a float tensor, got {image.dtype}")
        mean = torch.as_tensor(self.mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        if (std == 0).any():
            raise ValueError("std evaluated to zero, leading to division by zero")
        out = image if self.inplace else image.clone()
        return out.sub_(mean).div_(std)


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        for transform in self.transforms:
            image = transform(image)
        return image


def transforms_module() -> types.ModuleType:
    """A ``torchvision.transforms`` stand-in holding the four classes and the enum."""
    module = types.ModuleType("torchvision.transforms", "serve_app's torchvision.transforms subset")
    for cls in (Compose, Resize, CenterCrop, Normalize, InterpolationMode):
        setattr(module, cls.__name__, cls)
    return module


def import_shapegen() -> types.ModuleType:
    """``hy3dgen.shapegen``, imported with torchvision's transforms available.

    Where the real torchvision imports it is used. Where it does not, the stand-in is in
    ``sys.modules`` only while hy3dgen's modules are imported (the conditioner keeps its
    reference) and is removed afterwards, so no other library mistakes it for torchvision:
    transformers and diffusers decide what is available from ``find_spec``, and the model
    classes hy3dgen takes from them are imported before the stand-in goes in.
    """
    global provider
    if "hy3dgen.shapegen" in sys.modules:
        return sys.modules["hy3dgen.shapegen"]
    reason = _torchvision_failure()
    if reason is None:
        provider = "torchvision"
        return importlib.import_module("hy3dgen.shapegen")
    _forget("torchvision")
    # What hy3dgen takes from transformers and diffusers, loaded while no torchvision exists.
    import diffusers.configuration_utils  # noqa: F401
    import diffusers.schedulers.scheduling_utils  # noqa: F401
    import diffusers.utils.torch_utils  # noqa: F401
    from transformers import (  # noqa: F401
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        Dinov2Config,
        Dinov2Model,
    )

    logger.info(
        "torchvision is not importable here (%s: %s); hy3dgen's image conditioner uses "
        "serve_app's transforms",
        type(reason).__name__,
        str(reason).splitlines()[0] if str(reason) else "",
    )
    package = types.ModuleType("torchvision", "serve_app's torchvision stand-in (transforms)")
    package.__spec__ = importlib.machinery.ModuleSpec("torchvision", None, is_package=True)
    package.__path__ = []
    transforms = transforms_module()
    transforms.__spec__ = importlib.machinery.ModuleSpec("torchvision.transforms", None)
    package.transforms = transforms  # type: ignore[attr-defined]
    sys.modules["torchvision"] = package
    sys.modules["torchvision.transforms"] = transforms
    try:
        shapegen = importlib.import_module("hy3dgen.shapegen")
    finally:
        _forget("torchvision")
    provider = "compat"
    return shapegen


def _torchvision_failure() -> Exception | None:
    """None when the real ``torchvision.transforms`` imports, else why it does not."""
    try:
        importlib.import_module("torchvision.transforms")
    except Exception as exc:  # ImportError, or the CUDA build's RuntimeError on a CPU torch
        return exc
    return None


def _forget(package: str) -> None:
    """Drop ``package`` and its submodules from ``sys.modules``."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]
