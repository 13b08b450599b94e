"""ShapeTexture: the (GPU) deployment that turns a cut-out into the canonical textured mesh."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from deployments.worker import RunReporter, lower_priority
from serve_app.config import AppConfig
from serve_app.contracts.runs import GIVEN_MESH, GIVEN_MESH_VERSION, JobTicket, RunResult
from serve_app.contracts.stages import Stage
from serve_app.errors import (
    GeneratorVersionChangedError,
    InvalidInputError,
    ModelUnavailableError,
    OrfeasError,
)
from serve_app.metrics import ReplicaStageTimings
from serve_app.pipeline.types import CutOut, TexturedMesh
from serve_app.registry.client import find_registry
from serve_app.storage import ArtifactStore

if TYPE_CHECKING:
    from serve_app.pipeline.runner import ModelBuilder, StageTimer

logger = logging.getLogger(__name__)


class ShapeTexture:
    """Shape → texture → export for one job; writes its artifacts to the store itself.

    Every enabled generator is loaded once per replica (one model copy). A replica may take
    two runs at once (``max_ongoing_requests`` 2): each generator serializes its own device
    section (hunyuan3d: conditioning, denoising, volume decoding; inflate: all of it) with a
    lock, and the CPU tail of a run (surface extraction, clean-up, texturing, export) runs
    outside it, so one job's tail overlaps the next job's GPU work while the GPU holds one
    run's memory at a time. A generator that cannot load (a missing
    model directory, say) is reported to the registry with the reason, which ``/api/health``
    shows; its jobs fail with that reason while the other generators keep serving.
    Returns only small metadata, never mesh bytes.
    """

    def __init__(self, config: AppConfig) -> None:
        from serve_app.pipeline.generators import load_generator
        from serve_app.pipeline.runner import ModelBuilder
        from serve_app.pipeline.texture import load_texturer

        lower_priority(config.shape_texture.niceness)
        self._config = config
        self._store = ArtifactStore(config.storage.root)
        self._registry = find_registry(config)
        self._builders: dict[str, ModelBuilder] = {}
        self._load_errors: dict[str, OrfeasError] = {}
        self._texturer = load_texturer(config.pipeline.texturer, config.pipeline.texture)
        for name in config.pipeline.generators.enabled():
            try:
                generator = load_generator(name, config.pipeline)
            except OrfeasError as exc:
                logger.error("generator %s is not available: %s", name, exc.message)
                self._load_errors[name] = exc
                continue
            self._builders[name] = ModelBuilder(generator, self._texturer)
        self._report_generators()
        self._timings = {name: ReplicaStageTimings(name) for name in self._builders}

    def build(self, ticket: JobTicket, cutout: CutOut | Mapping[str, CutOut]) -> RunResult:
        """The run's canonical mesh from the cut-out of its photo, or the cut-outs of its
        views by name (the front among them), stored under the ticket's key and exported.
        A run of ``GIVEN_MESH`` textures the job's uploaded mesh instead of making one."""
        from serve_app.pipeline.runner import StageTimer, export_stage

        request = ticket.request
        given = request.generator == GIVEN_MESH
        name, version = (
            (GIVEN_MESH, GIVEN_MESH_VERSION)
            if given
            else (request.generator, self._builder(request.generator).generator.version)
        )
        key = self._checked_key(ticket, version)
        params = request.params  # resolved at admission
        timer = StageTimer()
        interval = self._config.registry.heartbeat_interval_s
        with RunReporter(self._registry, ticket, Stage.SHAPE_GENERATION, interval) as reporter:
            if given:
                mesh = self._texture_given(ticket, cutout, reporter, timer)
            else:
                builder = self._builder(name)
                mesh = builder.build(cutout, params, reporter.on_progress, reporter.cancel, timer)
            reporter.on_progress(Stage.EXPORT, 0.0)  # storing the model is part of export
            self._store.put_mesh(key, mesh.to_bytes())
            data = timer.run(
                Stage.EXPORT,
                export_stage,
                mesh,
                request.format,
                reporter.on_progress,
                reporter.cancel,
            )
            self._store.put_export(key, request.format, data)
        self._timings.setdefault(name, ReplicaStageTimings(name)).record(timer.seconds)
        return RunResult(
            artifact_key=key,
            formats=(request.format,),
            generator=name,
            generator_version=version,
            timings=timer.seconds,
            watertight=bool(mesh.meta.get("watertight")),
        )

    def _texture_given(
        self,
        ticket: JobTicket,
        cutout: CutOut | Mapping[str, CutOut],
        reporter: RunReporter,
        timer: StageTimer,
    ) -> TexturedMesh:
        """The job's uploaded mesh, read (the shape stage) and textured from its views."""
        from serve_app.pipeline.runner import is_watertight
        from serve_app.work.given_mesh import read_given_mesh, texture_given_mesh

        upload = ticket.upload
        if upload.mesh is None:
            raise InvalidInputError(f"job {ticket.job_id} has no mesh to texture")
        data = self._store.read_upload(upload.mesh.sha256)
        limits = self._config.mesh_tools
        mesh = timer.run(
            Stage.SHAPE_GENERATION, read_given_mesh, data, limits, reporter.on_progress
        )
        views = {"front": cutout} if isinstance(cutout, CutOut) else dict(cutout)
        params = ticket.request.params
        reporter.cancel.raise_if_cancelled()
        textured = timer.run(
            Stage.TEXTURE_SYNTHESIS,
            texture_given_mesh,
            mesh,
            views,
            params,
            reporter.on_progress,
            reporter.cancel,
            self._texturer,
        )
        textured.meta = {
            "generator": GIVEN_MESH,
            "generator_version": GIVEN_MESH_VERSION,
            "quality": params.quality,
            "watertight": is_watertight(mesh),
            "views": ",".join(views),
        }
        return textured

    def generator_version(self, name: str) -> str:
        """The version of generator ``name`` here (what the registry keys its runs for)."""
        if name == GIVEN_MESH:
            return GIVEN_MESH_VERSION
        return self._builder(name).generator.version

    @staticmethod
    def _checked_key(ticket: JobTicket, version: str) -> str:
        """The ticket's cache key, if it was keyed for ``version`` of its generator."""
        if ticket.artifact_key is None or ticket.generator_version != version:
            raise GeneratorVersionChangedError(
                f"generator {ticket.request.generator!r} is version {version} here, the run "
                f"was keyed for {ticket.generator_version}; it is retried",
                generator=ticket.request.generator,
                version=version,
            )
        return ticket.artifact_key

    def _builder(self, name: str) -> ModelBuilder:
        builder = self._builders.get(name)
        if builder is not None:
            return builder
        error = self._load_errors.get(name)
        if error is not None:
            raise ModelUnavailableError(error.message, generator=name)
        raise ModelUnavailableError(f"generator {name!r} is not enabled here", generator=name)

    def _report_generators(self) -> None:
        """Tell the registry what each enabled generator is here: its version, or why it did
        not load. Sent at start and with every health check, so a restarted registry (which
        keeps no such state) knows again within one health-check period."""
        try:
            for name, builder in self._builders.items():
                self._registry.report_generator.remote(name, builder.generator.version)
            for name, error in self._load_errors.items():
                self._registry.report_generator.remote(name, None, error.message)
        except Exception as exc:  # a missing registry must not make this replica unhealthy
            logger.warning("could not report the generators to the registry: %s", exc)

    def check_health(self) -> None:
        self._store.check_writable()
        self._report_generators()
