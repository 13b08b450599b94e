"""Materials: named PBR presets and custom colours, applied to a textured mesh.

A preset changes the finish (glTF's metallic and roughness factors) and keeps the model's
texture: "metal" is the photo's colours as a metal. A custom material may also give a
``base_color``, which replaces the texture by that plain colour.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from serve_app.contracts.meshtools import CUSTOM, HEX_COLOR_PATTERN, CustomMaterial, Material
from serve_app.errors import ValidationFailedError
from serve_app.pipeline.types import TexturedMesh


def _preset(name: str, metallic: float, roughness: float, description: str) -> Material:
    return Material(name=name, metallic=metallic, roughness=roughness, description=description)


#: The presets, by name, as ``GET /api/materials`` lists them.
PRESETS: dict[str, Material] = {
    p.name: p
    for p in (
        _preset("matte_plastic", 0.0, 0.8, "matte plastic: a dull, even finish"),
        _preset("glossy_plastic", 0.0, 0.25, "glossy plastic: sharp highlights"),
        _preset("metal", 1.0, 0.3, "brushed metal: the colours reflect as metal"),
        _preset("ceramic", 0.0, 0.1, "glazed ceramic: mirror-like highlights"),
        _preset("wood", 0.0, 0.65, "wood: satin, a little sheen"),
        _preset("rubber", 0.0, 0.95, "rubber: no highlights at all"),
    )
}


def resolve_material(spec: str | CustomMaterial) -> Material:
    """A preset by name (422 for an unknown one, listing the names) or a custom material."""
    if isinstance(spec, CustomMaterial):
        color = spec.base_color.lower() if spec.base_color else None
        return Material(
            name=CUSTOM, base_color=color, metallic=spec.metallic, roughness=spec.roughness
        )
    preset = PRESETS.get(spec)
    if preset is None:
        raise ValidationFailedError(
            f"unknown material {spec[:40]!r}; use one of {', '.join(PRESETS)} or "
            '{"base_color": "#rrggbb", "metallic": 0..1, "roughness": 0..1}',
            presets=list(PRESETS),
        )
    return preset


def parse_hex_color(value: str) -> tuple[int, int, int]:
    """``#rrggbb`` as (r, g, b) 0..255; 422 if it is not one."""
    if not re.fullmatch(HEX_COLOR_PATTERN, value):
        raise ValidationFailedError(f"not a colour of the form #rrggbb: {value[:20]!r}")
    return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))


def apply_material(mesh: TexturedMesh, material: Material) -> TexturedMesh:
    """A copy of ``mesh`` with ``material``'s factors; its ``base_color``, if any, replaces
    the texture (by a 1 × 1 image of that colour). Geometry and UVs are shared, unchanged.
    """
    base_color = mesh.base_color
    texture = mesh.texture
    if material.base_color is not None:
        base_color = parse_hex_color(material.base_color)
        texture = np.array([[base_color]], dtype=np.uint8)
    return dataclasses.replace(
        mesh,
        texture=texture,
        base_color=base_color,
        metallic=float(material.metallic),
        roughness=float(material.roughness),
        material=material.name,
        meta=dict(mesh.meta),
    )
