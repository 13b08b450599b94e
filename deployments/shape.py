"""ShapeTexture: the (GPU) deployment that turns a cut-out into the canonical textured mesh."""

from __future__ import annotations

import threading

from deployments.worker import RunReporter, lower_priority
from serve_app.config import AppConfig
from serve_app.metrics import ReplicaStageTimings
from serve_app.pipeline.types import CutOut, Stage
from serve_app.registry.cache import cache_key
from serve_app.registry.client import find_registry
from serve_app.registry.jobs import JobTicket, RunResult
from serve_app.storage import ArtifactStore


class ShapeTexture:
    """Shape → texture → export for one job; writes its artifacts to the store itself.

    The generator is loaded once per replica and used by one request at a time (a lock,
    on top of ``max_ongoing_requests``). Returns only small metadata, never mesh bytes.
    """

    def __init__(self, config: AppConfig) -> None:
        from serve_app.pipeline.generators import get_generator
        from serve_app.pipeline.runner import ModelBuilder

        lower_priority(config.shape_texture.niceness)
        self._config = config
        self._store = ArtifactStore(config.storage.root)
        self._generator_name = config.pipeline.generator
        self._generator = get_generator(config.pipeline.generator, config.pipeline.device)
        self._builder = ModelBuilder(self._generator)
        self._lock = threading.Lock()
        self._registry = find_registry(config)
        self._registry.report_generator.remote(self._generator_name, self._generator.version)
        self._timings: ReplicaStageTimings = ReplicaStageTimings(self._generator_name)

    def build(self, ticket: JobTicket, cutout: CutOut) -> RunResult:
        from serve_app.pipeline.runner import StageTimer, export_stage

        request = ticket.request
        key = cache_key(
            ticket.upload.sha256,
            request.params,
            self._config.pipeline.background_model,
            self._generator_name,
            self._generator.version,
        )
        timer = StageTimer()
        interval = self._config.registry.heartbeat_interval_s
        with RunReporter(self._registry, ticket, Stage.SHAPE_GENERATION, interval) as reporter:
            with self._lock:
                mesh = self._builder.build(
                    cutout, request.params, reporter.on_progress, reporter.cancel, timer
                )
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
        self._timings.record(timer.seconds)
        return RunResult(
            artifact_key=key,
            formats=(request.format,),
            generator=self._generator_name,
            generator_version=self._generator.version,
            timings=timer.seconds,
        )

    def check_health(self) -> None:
        self._store.check_writable()
