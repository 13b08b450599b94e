"""Content addresses of a job's model variants (same job, base, operation and parameters →
same id) and of preview images (same mesh and view → same picture).

A variant id is the sha256 hex of a canonical JSON recipe: the schema version, the job,
the content key of the mesh it is made from (the job's canonical mesh key, or the base
variant's id — so a re-run of the job gives new ids), the operation and its parameters
(keys sorted, floats rounded to 1e-9, so 0.3 and 0.30000000000000004 are one variant). Being
a 64-hex digest, the id is also the ArtifactStore key of the variant's mesh.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from serve_app.meshtools.config import MAX_SIDE, MIN_SIDE, TRANSPARENT

#: Bumped when a recipe's meaning changes (an operation's algorithm, the mesh layout).
VARIANT_SCHEMA = 1
_DIGITS = 9


class VariantOperation(StrEnum):
    """What made a variant."""

    OPTIMIZE = "optimize"
    MATERIAL = "material"


def variant_id(
    job_id: str, base_key: str, operation: VariantOperation, params: Mapping[str, Any]
) -> str:
    """The id of the variant of ``job_id`` made by ``operation`` with ``params`` from the
    mesh stored under ``base_key``. ``params`` holds JSON values (pydantic's
    ``model_dump(mode="json")``); NaN and infinities are refused."""
    recipe = {
        "schema": VARIANT_SCHEMA,
        "job": job_id,
        "base": base_key,
        "operation": str(VariantOperation(operation)),
        "params": _canonical(dict(params)),
    }
    blob = json.dumps(recipe, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("variant parameters must be finite")
        rounded = round(value, _DIGITS)
        return int(rounded) if rounded.is_integer() else rounded
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    raise TypeError(f"not a JSON value: {type(value).__name__}")


#: Bumped when a preview of the same mesh and view would look different (lights, framing).
PREVIEW_SCHEMA = 1
BACKGROUND_PATTERN = rf"^(#[0-9a-fA-F]{{6}}|{TRANSPARENT})$"


class PreviewView(BaseModel):
    """How a preview shows a model: ``width`` × ``height`` pixels, seen from
    ``azimuth_deg``/``elevation_deg`` (see ``serve_app.meshtools.preview.render_preview``),
    on ``background``. The body of ``POST /api/preview-3d`` adds which model."""

    width: int = Field(default=512, ge=MIN_SIDE, le=MAX_SIDE)
    height: int = Field(default=512, ge=MIN_SIDE, le=MAX_SIDE)
    azimuth_deg: float = Field(
        default=30.0,
        ge=-3600,
        le=3600,
        allow_inf_nan=False,
        description="about the vertical axis: 0 from the front, 90 from the right",
    )
    elevation_deg: float = Field(
        default=20.0, ge=-90, le=90, allow_inf_nan=False, description="-90 below .. 90 above"
    )
    background: str = Field(
        default="#ffffff",
        pattern=BACKGROUND_PATTERN,
        description='"#rrggbb", or "transparent" (a PNG with alpha)',
    )

    def view_of(self) -> dict[str, Any]:
        """The view's fields alone (without those a subclass adds)."""
        return self.model_dump(include=set(PreviewView.model_fields))


class PreviewOrder(PreviewView):
    """A picture of the canonical mesh stored under ``mesh_key`` (a job's model or a
    variant), as its :class:`PreviewView` fields show it."""

    model_config = ConfigDict(frozen=True)

    mesh_key: str

    def view(self) -> str:
        """32 hex: the view's content address (the mesh's is ``mesh_key``); angles that
        differ by whole turns, and colours that differ in case, are one view."""
        recipe = {**self.view_of(), "schema": PREVIEW_SCHEMA}
        recipe["azimuth_deg"] = self.azimuth_deg % 360.0
        recipe["background"] = self.background.lower()
        blob = json.dumps(_canonical(recipe), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def thumbnail_order(mesh_key: str) -> PreviewOrder:
    """The view every job's thumbnail shows: 256 × 256, from the front right and above, on
    a transparent background."""
    return PreviewOrder(
        mesh_key=mesh_key,
        width=256,
        height=256,
        azimuth_deg=30.0,
        elevation_deg=20.0,
        background=TRANSPARENT,
    )
