"""BackgroundRemoval: the CPU replica set that cuts a job's subject out of its photos."""

from __future__ import annotations

import time

from deployments.worker import RunReporter, lower_priority
from serve_app.config import AppConfig
from serve_app.contracts.runs import JobTicket
from serve_app.contracts.stages import Stage
from serve_app.metrics import ReplicaStageTimings
from serve_app.pipeline.types import CutOut
from serve_app.registry.client import find_registry
from serve_app.storage import ArtifactStore


class BackgroundRemoval:
    """Decodes a job's stored upload and removes its background (rembg, U²-Net-p ONNX).

    The model is loaded once per replica; the remover serialises its ONNX session.
    """

    def __init__(self, config: AppConfig) -> None:
        from serve_app.pipeline.background import RembgRemover

        lower_priority(config.background_removal.niceness)
        self._config = config
        self._store = ArtifactStore(config.storage.root)
        self._remover = RembgRemover(config.pipeline.models_dir, config.pipeline.background_model)
        self._registry = find_registry(config)
        self._timings: ReplicaStageTimings = ReplicaStageTimings(config.pipeline.generator)

    def remove(self, ticket: JobTicket) -> dict[str, CutOut]:
        """The cut-outs of ``ticket``'s photo and of its other views, by view name (one
        batch); passed on to ShapeTexture by reference, never through the registry."""
        from serve_app.pipeline.background import remove_views
        from serve_app.pipeline.images import decode_image

        interval = self._config.registry.heartbeat_interval_s
        upload = ticket.upload
        files = upload.view_files()
        with RunReporter(self._registry, ticket, Stage.BACKGROUND_REMOVAL, interval) as reporter:
            start = time.perf_counter()
            limits = self._config.pipeline.limits
            images = {
                view: decode_image(self._store.read_upload(sha), limits)
                for view, sha in files.items()
            }
            reporter.cancel.raise_if_cancelled()
            cutouts = remove_views(self._remover, images, reporter.on_progress, reporter.cancel)
        self._timings.record({Stage.BACKGROUND_REMOVAL.value: time.perf_counter() - start})
        return cutouts

    def check_health(self) -> None:
        self._store.check_writable()
