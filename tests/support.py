"""Test material shared by the suites: real photos, synthetic cut-outs, the models dir."""

from __future__ import annotations

import io
import os
from functools import cache
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from serve_app.config import AppConfig

REPO = Path(__file__).resolve().parents[1]


def config_from_yaml(path: Path | str, app_name: str | None = None) -> AppConfig:
    """The ``args`` of application ``app_name`` (or the only one) in a Serve config."""
    with open(path, encoding="utf-8") as f:
        document = yaml.safe_load(f) or {}
    apps = document.get("applications", [])
    chosen = [a for a in apps if app_name is None or a.get("name") == app_name]
    if len(chosen) != 1:
        raise ValueError(f"{path}: expected one application named {app_name!r}")
    return AppConfig.model_validate(chosen[0].get("args") or {})


def models_dir() -> Path:
    """Where `make setup` put u2netp.onnx (ORFEAS_MODELS_DIR overrides)."""
    return Path(os.environ.get("ORFEAS_MODELS_DIR", REPO / "models"))


@cache
def photo(name: str) -> np.ndarray:
    """A real photo from scikit-image (chelsea, astronaut, coffee, ...) as (h, w, 3) uint8."""
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def encode(array: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **options)
    return buf.getvalue()


def photo_bytes(name: str, fmt: str = "PNG") -> bytes:
    return encode(photo(name), fmt)


def ellipse_cutout(h: int = 300, w: int = 240, colour=(200, 60, 40)) -> np.ndarray:
    """An RGBA image of an opaque ellipse on a transparent background, (h, w, 4) uint8."""
    yy, xx = np.mgrid[:h, :w]
    inside = ((yy - h / 2) / (0.42 * h)) ** 2 + ((xx - w / 2) / (0.42 * w)) ** 2 < 1
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = inside * 255
    return rgba
