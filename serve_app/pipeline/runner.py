"""Running the stages: ``ModelBuilder`` (shape → texture) and the in-process ``Pipeline``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from PIL import Image

from serve_app.contracts.params import GenerationParams, OutputFormat
from serve_app.contracts.stages import Stage
from serve_app.pipeline.background import BackgroundRemover, RembgRemover, remove_views
from serve_app.pipeline.config import ImageLimits, PipelineConfig
from serve_app.pipeline.export import export_mesh
from serve_app.pipeline.generators import load_generator
from serve_app.pipeline.generators.base import MultiViewGenerator, ShapeGenerator
from serve_app.pipeline.images import decode_image
from serve_app.pipeline.scale import fit_to_dimensions
from serve_app.pipeline.texture import Texturer, load_texturer
from serve_app.pipeline.types import (
    CancelToken,
    CutOut,
    Mesh,
    ProgressCallback,
    TexturedMesh,
    front_and_views,
    no_progress,
)


class StageTimer:
    """Collects wall-clock seconds per stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, stage: Stage, fn, *args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[stage.value] = self.seconds.get(stage.value, 0.0) + (
                time.perf_counter() - start
            )


class ModelBuilder:
    """Shape generation then texture synthesis, scaled to the requested dimensions."""

    def __init__(self, generator: ShapeGenerator, texturer: Texturer | None = None) -> None:
        self.generator = generator
        self.texturer = texturer or load_texturer()

    def build(
        self,
        views: CutOut | Mapping[str, CutOut],
        params: GenerationParams,
        on_progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        timer: StageTimer | None = None,
    ) -> TexturedMesh:
        """The canonical mesh of the subject in ``views`` (one cut-out, the front, or
        cut-outs by view name): the shape from the front, the texture from every view. Its
        ``meta`` says how it was made and whether it is closed."""
        cutout, views = front_and_views(views)
        cancel = cancel or CancelToken()
        timer = timer or StageTimer()
        params = params.resolved_for(self.generator.name, self.generator.overrides)
        cancel.raise_if_cancelled()
        generator = self.generator
        if isinstance(generator, MultiViewGenerator) and len(views) > 1:
            mesh = timer.run(
                Stage.SHAPE_GENERATION, generator.generate_views, views, params, on_progress, cancel
            )
        else:
            mesh = timer.run(
                Stage.SHAPE_GENERATION, generator.generate, cutout, params, on_progress, cancel
            )
        cancel.raise_if_cancelled()
        textured = timer.run(
            Stage.TEXTURE_SYNTHESIS,
            self.texturer.texture,
            views,
            mesh,
            params,
            on_progress,
            cancel,
        )
        textured.vertices = fit_to_dimensions(textured.vertices, params.dimensions)
        textured.meta = {
            "generator": self.generator.name,
            "generator_version": self.generator.version,
            "quality": params.quality,
            "watertight": is_watertight(mesh),
            "views": ",".join(views),
        }
        cancel.raise_if_cancelled()
        return textured


def is_watertight(mesh: Mesh) -> bool:
    """Whether the mesh is closed: every edge shared by exactly two faces, once vertices at
    the same position are merged (trimesh's test)."""
    import trimesh

    tm = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=True)
    return bool(tm.is_watertight)


def export_stage(
    mesh: TexturedMesh,
    fmt: OutputFormat,
    on_progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> bytes:
    """The export stage: the canonical mesh encoded as ``fmt``, with progress reports."""
    if cancel:
        cancel.raise_if_cancelled()
    on_progress(Stage.EXPORT, 0.0)
    data = export_mesh(mesh, fmt)
    on_progress(Stage.EXPORT, 1.0)
    return data


@dataclass
class PipelineResult:
    mesh: TexturedMesh
    data: bytes
    timings: dict[str, float] = field(default_factory=dict)


class Pipeline:
    """All four stages in one process: what the CLI and the benchmark run."""

    def __init__(
        self, remover: BackgroundRemover, builder: ModelBuilder, limits: ImageLimits | None = None
    ) -> None:
        self.remover = remover
        self.builder = builder
        self.limits = limits or ImageLimits()

    @classmethod
    def from_config(cls, config: PipelineConfig, generator: str | None = None) -> Pipeline:
        """The pipeline with ``generator`` (default: the config's default generator)."""
        remover = RembgRemover(config.models_dir, config.background_model)
        builder = ModelBuilder(
            load_generator(generator or config.generator, config),
            load_texturer(config.texturer, config.texture),
        )
        return cls(remover, builder, config.limits)

    def run(
        self,
        image: bytes | Image.Image,
        params: GenerationParams | None = None,
        fmt: OutputFormat = "glb",
        on_progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
        views: Mapping[str, bytes | Image.Image] | None = None,
    ) -> PipelineResult:
        """The model of the subject in ``image`` (the front), textured from ``views`` too
        (photos from other views by name) when given."""
        params = params or GenerationParams()
        cancel = cancel or CancelToken()
        timer = StageTimer()
        images = {}
        for view, photo in {"front": image, **(views or {})}.items():
            if isinstance(photo, bytes):
                photo = timer.run(Stage.BACKGROUND_REMOVAL, decode_image, photo, self.limits)
            images[view] = photo
        cutouts = timer.run(
            Stage.BACKGROUND_REMOVAL, remove_views, self.remover, images, on_progress, cancel
        )
        mesh = self.builder.build(cutouts, params, on_progress, cancel, timer)
        data = timer.run(Stage.EXPORT, export_stage, mesh, fmt, on_progress, cancel)
        return PipelineResult(mesh=mesh, data=data, timings=timer.seconds)
