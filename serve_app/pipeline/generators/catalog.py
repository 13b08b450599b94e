"""Which generators exist, how each is loaded, the parameters each takes and their defaults.

Light (no torch): the ingress resolves a request's parameters here before it is queued, so
the cache key and the job record hold the parameters the generator will really use; an
explicit default and an omitted one are the same request. Which parameters a generator
takes, and their defaults by quality, are written once, on the fields of
:class:`~serve_app.pipeline.types.GenerationParams`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from serve_app.errors import ValidationFailedError
from serve_app.pipeline.types import TUNABLES, GenerationParams, GeneratorName

if TYPE_CHECKING:
    from serve_app.pipeline.config import PipelineConfig
    from serve_app.pipeline.generators import ShapeGenerator


def _load_inflate(config: PipelineConfig) -> ShapeGenerator:
    from serve_app.pipeline.generators.inflate import InflateGenerator

    return InflateGenerator(device=config.device)


def _load_hunyuan3d(config: PipelineConfig) -> ShapeGenerator:
    from serve_app.pipeline.generators.hunyuan3d import Hunyuan3DGenerator

    settings = config.generators.hunyuan3d
    assert settings is not None  # enabled() lists it only when set
    return Hunyuan3DGenerator(settings)


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator's name, what it is, and how it is loaded (its module is imported then)."""

    name: GeneratorName
    summary: str
    load: Callable[[PipelineConfig], ShapeGenerator]

    @property
    def parameters(self) -> tuple[str, ...]:
        """The generation parameters it takes, in the order of GenerationParams' fields."""
        return tuple(name for name, meta in TUNABLES.items() if self.name in meta.users)

    def defaults(self, quality: int) -> dict[str, int | float]:
        """The value of each parameter it takes when a request at ``quality`` leaves it out."""
        return {name: TUNABLES[name].at(quality) for name in self.parameters}


SPECS: dict[GeneratorName, GeneratorSpec] = {
    spec.name: spec
    for spec in (
        GeneratorSpec(
            GeneratorName.INFLATE,
            "silhouette inflation (no weights): a rounded, closed solid from the cut-out",
            _load_inflate,
        ),
        GeneratorSpec(
            GeneratorName.HUNYUAN3D,
            "Tencent Hunyuan3D-2 shape model (hy3dgen), weights from a local directory",
            _load_hunyuan3d,
        ),
    )
}


def spec(name: str) -> GeneratorSpec:
    try:
        return SPECS[GeneratorName(name)]
    except ValueError:
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
    generator = str(generator)
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
