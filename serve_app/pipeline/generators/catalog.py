"""Which generators exist, how each is loaded, the parameters each takes and their defaults.

Light (no torch): the ingress resolves a request's parameters here before it is queued, so
the cache key and the job record hold the parameters the generator will really use; an
explicit default and an omitted one are the same request. Which parameters a generator
takes, and their defaults by quality, are written once, on the fields of
:class:`~serve_app.pipeline.types.GenerationParams`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from serve_app.contracts.params import GenerationParams, GeneratorName
from serve_app.errors import ValidationFailedError

if TYPE_CHECKING:
    from serve_app.pipeline.config import PipelineConfig
    from serve_app.pipeline.generators.base import ShapeGenerator


def _load_inflate(config: PipelineConfig) -> ShapeGenerator:
    from serve_app.pipeline.generators.inflate import InflateGenerator

    return InflateGenerator(device=config.device)


def _load_hunyuan3d(config: PipelineConfig) -> ShapeGenerator:
    from serve_app.pipeline.generators.hunyuan3d import Hunyuan3DGenerator

    settings = config.generators.hunyuan3d
    assert settings is not None  # enabled() lists it only when set
    return Hunyuan3DGenerator(settings)


def _load_hunyuan3d_mv(config: PipelineConfig) -> ShapeGenerator:
    from serve_app.pipeline.generators.hunyuan3d_mv import Hunyuan3DMVGenerator

    settings = config.generators.hunyuan3d_mv
    assert settings is not None  # enabled() lists it only when set
    return Hunyuan3DMVGenerator(settings)


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator's name, what it is, and how it is loaded (its module is imported then)."""

    name: GeneratorName
    summary: str
    load: Callable[[PipelineConfig], ShapeGenerator]

    @property
    def parameters(self) -> tuple[str, ...]:
        """The generation parameters it takes, in the order of GenerationParams' fields."""
        return GenerationParams.parameters_of(self.name)


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
        GeneratorSpec(
            GeneratorName.HUNYUAN3D_MV,
            "Tencent Hunyuan3D-2mv shape model (hy3dgen) from the front, left, back and right "
            "views, weights from a local directory",
            _load_hunyuan3d_mv,
        ),
    )
}


def spec(name: str) -> GeneratorSpec:
    try:
        return SPECS[GeneratorName(name)]
    except ValueError:
        known = ", ".join(sorted(SPECS))
        raise ValidationFailedError(f"unknown shape generator {name!r}; known: {known}") from None


def resolve_params(
    generator: str,
    params: GenerationParams,
    overrides: Mapping[str, int | float] | None = None,
) -> GenerationParams:
    """``params`` with every parameter ``generator`` takes filled in (defaults from quality,
    or from ``overrides`` where it names one: hunyuan3d's for its variant and device, from
    ``hunyuan3d_profile``); a 422 for an unknown generator or a parameter it does not take."""
    return params.resolved_for(spec(generator).name, overrides)
