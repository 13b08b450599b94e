"""Variants of a completed job's model: what MeshTools is ordered to make, what it made."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

VARIANT_ID_PATTERN = r"^[0-9a-f]{64}$"
_VARIANT_ID_RE = re.compile(VARIANT_ID_PATTERN)


def is_variant_id(value: str) -> bool:
    return bool(_VARIANT_ID_RE.fullmatch(value))


@dataclass(frozen=True)
class VariantInfo:
    """A new version of a completed job's model, made by ``operation`` with ``params``.

    ``variant_id`` is its content address (64 hex, also the store key of its mesh);
    ``base`` the variant it was made from, None for the job's own model.
    """

    variant_id: str
    operation: str
    params: dict[str, Any]
    base: str | None
    faces: int
    watertight: bool | None
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class VariantOrder:
    """What the MeshTools deployment is asked to make: the variant ``variant_id`` of
    ``job_id`` from the mesh stored under ``base_key`` (the job's model, or the variant
    ``base``), by ``operation`` with ``params``."""

    job_id: str
    variant_id: str
    base: str | None
    base_key: str
    operation: str
    params: dict[str, Any]


@dataclass(frozen=True)
class VariantBuilt:
    """What the MeshTools deployment reports of a variant it stored."""

    faces: int
    watertight: bool | None
