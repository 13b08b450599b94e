"""What a generation is asked for: output formats, dimensions, the generator parameters."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.fields import FieldInfo

from serve_app.errors import ValidationFailedError

OutputFormat = Literal["glb", "obj", "stl", "ply", "3mf", "usdz"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("glb", "obj", "stl", "ply", "3mf", "usdz")

MAX_DIMENSION_MM = 10_000.0


class Dimensions(BaseModel):
    """Requested model size in millimetres; unset axes follow the model's aspect ratio."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: float | None = Field(default=None, gt=0, le=MAX_DIMENSION_MM, description="X extent, mm")
    height: float | None = Field(
        default=None, gt=0, le=MAX_DIMENSION_MM, description="Y extent, mm"
    )
    depth: float | None = Field(default=None, gt=0, le=MAX_DIMENSION_MM, description="Z extent, mm")

    @field_validator("width", "height", "depth")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number of millimetres")
        return value


class GeneratorName(StrEnum):
    """The shape generators the service knows (``catalog.SPECS`` says what each is)."""

    INFLATE = "inflate"
    HUNYUAN3D = "hunyuan3d"
    HUNYUAN3D_MV = "hunyuan3d_mv"


#: Bounds of the generator parameters (inclusive), shared by the API schema and the CLI.
SEED_MAX = 2**32 - 1
STEPS_RANGE = (1, 100)
GUIDANCE_RANGE = (0.0, 20.0)
OCTREE_RANGE = (16, 512)
NUM_CHUNKS_RANGE = (1_000, 100_000)
MC_LEVEL_RANGE = (-1.0, 1.0)
FACE_COUNT_RANGE = (500, 1_000_000)

#: A generator parameter's default: one value, or one per quality 1..10.
Default = int | float | tuple[int, ...] | tuple[float, ...]


@dataclass(frozen=True)
class Tunable:
    """What makes a field of :class:`GenerationParams` a generator parameter: the
    generators that take it, and its default when a request leaves it out."""

    users: tuple[GeneratorName, ...]
    default: Default

    def at(self, quality: int) -> int | float:
        """The default for ``quality`` (1..10)."""
        return self.default[quality - 1] if isinstance(self.default, tuple) else self.default

    def describe(self, doc: str) -> str:
        """``doc`` with who takes the parameter and its default, as the API documents it."""
        if isinstance(self.default, tuple):
            default = "default from quality 1..10: " + ", ".join(str(v) for v in self.default)
        else:
            default = f"default {self.default}"
        return f"{', '.join(self.users)}: {doc}; {default}"


def tunable(
    doc: str,
    default: Default,
    bounds: tuple[int, int] | tuple[float, float],
    users: tuple[GeneratorName, ...] = (GeneratorName.HUNYUAN3D, GeneratorName.HUNYUAN3D_MV),
) -> Any:
    """The field of a generator parameter: None (the generator's default for the quality,
    filled in when the parameters are resolved) or a value within ``bounds`` (inclusive;
    float bounds: a finite float)."""
    meta = Tunable(users, default)
    low, high = bounds
    info: FieldInfo = Field(  # type: ignore[assignment]  # Field() is typed as its default
        default=None,
        ge=low,
        le=high,
        allow_inf_nan=False if isinstance(low, float) else None,
        description=meta.describe(doc),
    )
    info.metadata.append(meta)  # found again by GenerationParams.tunables()
    return info


class GenerationParams(BaseModel):
    """What a generation is asked for: the one definition of each parameter (its range,
    default and doc), from which the HTTP body, the CLI's flags and the generators' defaults
    derive. Once resolved for its generator (every parameter it takes filled in, defaults
    from ``quality``), part of the content-addressed cache key.

    Adding a generator parameter is one :func:`tunable` field here, plus the generator
    that reads it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    quality: int = Field(default=5, ge=1, le=10, description="1 (fast) to 10 (fine)")
    dimensions: Dimensions = Field(default_factory=Dimensions)
    seed: int | None = tunable("seed of the initial noise (same seed, same mesh)", 0, (0, SEED_MAX))
    # hy3dgen's own default is 50 steps.
    steps: int | None = tunable(
        "denoising steps", (5, 10, 15, 20, 30, 30, 40, 40, 50, 50), STEPS_RANGE
    )
    guidance_scale: float | None = tunable("classifier-free guidance scale", 5.0, GUIDANCE_RANGE)
    octree_resolution: int | None = tunable(
        "surface grid resolution n ((n + 1)³ occupancy queries)",
        (128, 128, 192, 192, 256, 256, 320, 320, 384, 384),
        OCTREE_RANGE,
    )
    num_chunks: int | None = tunable(
        "occupancy queries decoded per batch (GPU memory against speed)", 8_000, NUM_CHUNKS_RANGE
    )
    mc_level: float | None = tunable(
        "level of the occupancy field taken as the surface", 0.0, MC_LEVEL_RANGE
    )
    face_count: int | None = tunable(
        "triangles after clean-up (at most)",
        (10_000, 20_000, 30_000, 40_000, 60_000, 80_000, 100_000, 150_000, 200_000, 300_000),
        FACE_COUNT_RANGE,
    )

    @classmethod
    def tunables(cls) -> dict[str, Tunable]:
        """The generator parameters (every field but quality and dimensions), in order."""
        return {
            name: meta
            for name, info in cls.model_fields.items()
            for meta in info.metadata
            if isinstance(meta, Tunable)
        }

    @classmethod
    def parameters_of(cls, generator: str) -> tuple[str, ...]:
        """The generator parameters ``generator`` takes, in the order of the fields."""
        return tuple(name for name, meta in cls.tunables().items() if generator in meta.users)

    def resolved_for(
        self, generator: str, overrides: Mapping[str, int | float] | None = None
    ) -> Self:
        """These parameters with every one ``generator`` takes filled in (defaults from
        quality, or from ``overrides`` where it names one: a deployment's own, such as
        hunyuan3d's for its checkpoint's variant and its device); resolving twice changes
        nothing.

        A parameter the generator does not take is a 422 naming it, rather than being
        ignored: it would change nothing but the cache key.
        """
        generator = str(generator)
        tunables = self.tunables()
        takes = self.parameters_of(generator)
        for name in self.given():
            if name not in takes:
                users = ", ".join(u for u in GeneratorName if u in tunables[name].users)
                raise ValidationFailedError(
                    f"{name}: not a parameter of generator {generator!r} (used by: "
                    f"{users or 'none'})",
                    fields=[{"loc": ["body", name], "message": f"not used by {generator!r}"}],
                )
        chosen = overrides or {}
        update = {
            name: value
            if (value := getattr(self, name)) is not None
            else chosen.get(name, tunables[name].at(self.quality))
            for name in takes
        }
        return self.model_copy(update=update)

    def given(self) -> dict[str, int | float]:
        """The generator parameters that are set (not left to the generator's defaults)."""
        return {
            name: getattr(self, name)
            for name in TUNABLE_PARAMETERS
            if getattr(self, name) is not None
        }


#: The parameters some generator takes besides quality and dimensions, by name; None means
#: "the generator's default for the quality" until the parameters are resolved.
TUNABLES: dict[str, Tunable] = GenerationParams.tunables()
TUNABLE_PARAMETERS: tuple[str, ...] = tuple(TUNABLES)
