"""Which generators exist, the parameters each takes, and their defaults per quality.

Light (no torch): the ingress resolves a request's parameters here before it is queued, so
the cache key and the job record hold the parameters the generator will really use; an
explicit default and an omitted one are the same request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from serve_app.contracts.params import TUNABLE_PARAMETERS, GenerationParams
from serve_app.errors import ValidationFailedError

INFLATE = "inflate"
HUNYUAN3D = "hunyuan3d"

#: Denoising steps per quality 1..10 (hy3dgen's own default is 50).
HUNYUAN3D_STEPS = (5, 10, 15, 20, 30, 30, 40, 40, 50, 50)
#: Marching-cubes grid per quality 1..10: (n + 1)³ occupancy queries.
HUNYUAN3D_OCTREE = (128, 128, 192, 192, 256, 256, 320, 320, 384, 384)
#: Target triangle count after post-processing per quality 1..10.
HUNYUAN3D_FACES = (
    10_000,
    20_000,
    30_000,
    40_000,
    60_000,
    80_000,
    100_000,
    150_000,
    200_000,
    300_000,
)
HUNYUAN3D_GUIDANCE = 5.0
HUNYUAN3D_NUM_CHUNKS = 8_000
HUNYUAN3D_MC_LEVEL = 0.0
DEFAULT_SEED = 0


def _hunyuan3d_defaults(quality: int) -> dict[str, int | float]:
    i = quality - 1
    return {
        "seed": DEFAULT_SEED,
        "steps": HUNYUAN3D_STEPS[i],
        "guidance_scale": HUNYUAN3D_GUIDANCE,
        "octree_resolution": HUNYUAN3D_OCTREE[i],
        "num_chunks": HUNYUAN3D_NUM_CHUNKS,
        "mc_level": HUNYUAN3D_MC_LEVEL,
        "face_count": HUNYUAN3D_FACES[i],
    }


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator's name, what it is, and the parameters it takes (defaults by quality)."""

    name: str
    summary: str
    defaults: Callable[[int], dict[str, int | float]]

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(name for name in TUNABLE_PARAMETERS if name in self.defaults(5))


SPECS: dict[str, GeneratorSpec] = {
    INFLATE: GeneratorSpec(
        INFLATE,
        "silhouette inflation (no weights): a rounded, closed solid from the cut-out",
        lambda quality: {},
    ),
    HUNYUAN3D: GeneratorSpec(
        HUNYUAN3D,
        "Tencent Hunyuan3D-2 shape model (hy3dgen), weights from a local directory",
        _hunyuan3d_defaults,
    ),
}


def spec(name: str) -> GeneratorSpec:
    try:
        return SPECS[name]
    except KeyError:
        known = ", ".join(sorted(SPECS))
        raise ValidationFailedError(f"unknown shape generator {name!r}; known: {known}") from None


def users_of(parameter: str) -> list[str]:
    """The generators that take ``parameter``."""
    return [name for name, s in SPECS.items() if parameter in s.parameters]


def resolve_params(generator: str, params: GenerationParams) -> GenerationParams:
    """``params`` with every parameter ``generator`` takes filled in (defaults from quality).

    A parameter the generator does not take is a 422 naming it, rather than being ignored:
    it would change nothing but the cache key.
    """
    chosen = spec(generator)
    for name in params.given():
        if name not in chosen.parameters:
            users = ", ".join(users_of(name)) or "none"
            raise ValidationFailedError(
                f"{name}: not a parameter of generator {generator!r} (used by: {users})",
                fields=[{"loc": ["body", name], "message": f"not used by {generator!r}"}],
            )
    defaults = chosen.defaults(params.quality)
    update = {
        name: value if (value := getattr(params, name)) is not None else defaults[name]
        for name in chosen.parameters
    }
    return params.model_copy(update=update)
