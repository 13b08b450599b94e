"""How a canonical mesh looks in every format: its material's name and its colours."""

from __future__ import annotations

import numpy as np

from serve_app.pipeline.types import TexturedMesh


def srgb_to_linear(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """An sRGB colour (0..255 per channel) as linear-light factors (0..1), as glTF wants."""

    def channel(c: int) -> float:
        x = c / 255.0
        return x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4

    r, g, b = rgb
    return (channel(r), channel(g), channel(b))


def material_name(mesh: TexturedMesh) -> str:
    """The material's name in GLB and MTL: the applied material's, else ``base``."""
    return mesh.material or "base"


def vertex_colours(mesh: TexturedMesh) -> np.ndarray:
    """Base colour sampled at each vertex's UV: (n, 4) uint8 RGBA."""
    h, w = mesh.texture.shape[:2]
    cols = np.clip(np.rint(mesh.uv[:, 0] * (w - 1)), 0, w - 1).astype(np.int64)
    rows = np.clip(np.rint((1.0 - mesh.uv[:, 1]) * (h - 1)), 0, h - 1).astype(np.int64)
    rgb = mesh.texture[rows, cols]
    return np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
