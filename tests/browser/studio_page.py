"""What the browser tests share: where screenshots go, recorded traffic, pixel checks."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"


@dataclass
class Traffic:
    """Every URL the page asked for (HTTP requests and WebSockets) and what it logged."""

    urls: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


def pixel_spread(png: bytes) -> tuple[float, float]:
    """(standard deviation of all channels, share of pixels unlike the top-left one)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    background = rgb[0, 0]
    differs = np.abs(rgb - background).max(axis=2) > 24
    return float(rgb.std()), float(differs.mean())
