"""Data types shared by the pipeline stages: stages, progress, cancel, parameters and meshes."""

from __future__ import annotations

import io
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.fields import FieldInfo

from serve_app.errors import JobCancelledError, ValidationFailedError


class Stage(StrEnum):
    """The pipeline stages, in the order a run goes through them.

    ``text_to_image`` runs only in a text job's run (a prompt made into its picture); the
    other four make a model of a picture (``MODEL_STAGES``).
    """

    TEXT_TO_IMAGE = "text_to_image"
    BACKGROUND_REMOVAL = "background_removal"
    SHAPE_GENERATION = "shape_generation"
    TEXTURE_SYNTHESIS = "texture_synthesis"
    EXPORT = "export"


#: The stages that make a model of a picture (uploaded, or made from a prompt).
MODEL_STAGES: tuple[Stage, ...] = (
    Stage.BACKGROUND_REMOVAL,
    Stage.SHAPE_GENERATION,
    Stage.TEXTURE_SYNTHESIS,
    Stage.EXPORT,
)

#: Overall progress band (percent) of each stage of a model run (a picture → a model).
STAGE_BANDS: dict[Stage, tuple[float, float]] = {
    Stage.BACKGROUND_REMOVAL: (0.0, 10.0),
    Stage.SHAPE_GENERATION: (10.0, 60.0),
    Stage.TEXTURE_SYNTHESIS: (60.0, 90.0),
    Stage.EXPORT: (90.0, 100.0),
}

#: The share (percent) of a prompt-to-model run that making the picture takes; the model
#: stages' bands are rescaled into the rest, in order.
TEXT_TO_IMAGE_SHARE = 30.0


class RunPlan(StrEnum):
    """Which stages one run of a job goes through."""

    #: A picture (uploaded, or made by an earlier run) → a model: the four model stages.
    MODEL = "model"
    #: A prompt → a picture: ``text_to_image`` alone.
    IMAGE = "image"
    #: A prompt → a picture → a model, in one run: all five stages.
    TEXT_TO_MODEL = "text_to_model"

    @property
    def stages(self) -> tuple[Stage, ...]:
        return PLAN_STAGES[self]

    @property
    def makes_image(self) -> bool:
        return self is not RunPlan.MODEL

    @property
    def makes_model(self) -> bool:
        return self is not RunPlan.IMAGE


PLAN_STAGES: dict[RunPlan, tuple[Stage, ...]] = {
    RunPlan.MODEL: MODEL_STAGES,
    RunPlan.IMAGE: (Stage.TEXT_TO_IMAGE,),
    RunPlan.TEXT_TO_MODEL: (Stage.TEXT_TO_IMAGE, *MODEL_STAGES),
}


def _text_to_model_bands() -> dict[Stage, tuple[float, float]]:
    share = TEXT_TO_IMAGE_SHARE
    scale = (100.0 - share) / 100.0
    bands = {Stage.TEXT_TO_IMAGE: (0.0, share)}
    for stage, (lo, hi) in STAGE_BANDS.items():
        bands[stage] = (share + lo * scale, share + hi * scale)
    return bands


#: Each plan's stages and their bands: consecutive, from 0 to 100, in the plan's order.
PLAN_BANDS: dict[RunPlan, dict[Stage, tuple[float, float]]] = {
    RunPlan.MODEL: STAGE_BANDS,
    RunPlan.IMAGE: {Stage.TEXT_TO_IMAGE: (0.0, 100.0)},
    RunPlan.TEXT_TO_MODEL: _text_to_model_bands(),
}


def overall_progress(stage: Stage, fraction: float, plan: RunPlan = RunPlan.MODEL) -> float:
    """Map ``fraction`` (0..1) of ``stage`` onto the 0..100 progress scale of a ``plan`` run.

    Raises KeyError for a stage the plan does not go through.
    """
    lo, hi = PLAN_BANDS[plan][stage]
    return lo + (hi - lo) * min(1.0, max(0.0, fraction))


ProgressCallback = Callable[[Stage, float], None]
"""``on_progress(stage, fraction)`` with ``fraction`` in [0, 1]."""


def no_progress(stage: Stage, fraction: float) -> None:
    """A progress callback that ignores every report."""


class CancelToken:
    """A thread-safe cancel flag checked by the stages between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelledError("the job was cancelled")


OutputFormat = Literal["glb", "obj", "stl", "ply"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("glb", "obj", "stl", "ply")

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
    users: tuple[GeneratorName, ...] = (GeneratorName.HUNYUAN3D,),
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

    def resolved_for(self, generator: str) -> Self:
        """These parameters with every one ``generator`` takes filled in (defaults from
        quality); resolving twice changes nothing.

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
        update = {
            name: value
            if (value := getattr(self, name)) is not None
            else tunables[name].at(self.quality)
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


@dataclass
class CutOut:
    """A subject cut out of its background.

    rgba : (h, w, 4) uint8, straight (not premultiplied) alpha
    mask : (h, w) bool, the subject's pixels
    """

    rgba: np.ndarray
    mask: np.ndarray
    source: Literal["alpha", "model"] = "model"


@dataclass
class Mesh:
    """An untextured triangle mesh in the generator's own units.

    vertices : (n, 3) float32
    faces    : (m, 3) int64, counter-clockwise seen from outside
    """

    vertices: np.ndarray
    faces: np.ndarray


@dataclass
class TexturedMesh:
    """The canonical result of one generation, from which every format is exported.

    vertices   : (n, 3) float32, millimetres; +Y up, +Z towards the camera
    faces      : (m, 3) int64, counter-clockwise seen from outside
    uv         : (n, 2) float32, OpenGL convention (v = 0 at the image's bottom)
    texture    : (h, w, 3) uint8 base-colour image (sRGB)
    roughness, metallic : glTF's PBR factors, 0..1
    base_color : (r, g, b) sRGB 0..255 when a plain colour replaces the texture (then
                 ``texture`` is that colour, 1 × 1), None while the texture is the colour
    material   : the name of the material applied (a preset or "custom"), None for the
                 generator's own
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    texture: np.ndarray
    roughness: float = 0.8
    metallic: float = 0.0
    meta: dict[str, float | int | str | bool] = field(default_factory=dict)
    base_color: tuple[int, int, int] | None = None
    material: str | None = None

    def to_bytes(self) -> bytes:
        """Serialise to an ``.npz`` (the canonical artifact), uncompressed: zlib over the
        texture costs more time per job than the disk it saves is worth. ``base_color`` and
        ``material`` are written only when set, so files without them read as before."""
        arrays: dict[str, np.ndarray] = {
            "vertices": self.vertices.astype(np.float32),
            "faces": self.faces.astype(np.int64),
            "uv": self.uv.astype(np.float32),
            "texture": self.texture.astype(np.uint8),
            "pbr": np.array([self.roughness, self.metallic], dtype=np.float32),
        }
        if self.base_color is not None:
            arrays["base_color"] = np.array(self.base_color, dtype=np.uint8)
        if self.material is not None:
            arrays["material"] = np.array(self.material, dtype=np.str_)
        buf = io.BytesIO()
        arrays["meta"] = np.array(json.dumps(self.meta, sort_keys=True))
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            roughness, metallic = (float(x) for x in z["pbr"])
            base_color = None
            if "base_color" in z.files:
                r, g, b = (int(x) for x in z["base_color"])
                base_color = (r, g, b)
            return cls(
                vertices=z["vertices"],
                faces=z["faces"],
                uv=z["uv"],
                texture=z["texture"],
                roughness=roughness,
                metallic=metallic,
                meta=read_meta(z),
                base_color=base_color,
                material=str(z["material"]) if "material" in z.files else None,
            )


def read_meta(archive: Any) -> dict[str, float | int | str | bool]:
    """The ``meta`` of a canonical mesh's open ``.npz`` (empty for meshes stored before it)."""
    if "meta" not in archive.files:
        return {}
    meta = json.loads(str(archive["meta"]))
    return meta if isinstance(meta, dict) else {}
