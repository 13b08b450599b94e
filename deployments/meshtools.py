"""MeshTools: the CPU deployment that makes variants of models and renders their previews.

Decimation (pymeshlab) and rendering (VTK over EGL) are native code that holds the GIL for
long stretches, needs hundreds of MB and, on large models, seconds of CPU; here they run
in their own replicas, sized and prioritised by config, instead of in the ingress, which
keeps answering status polls and streams meanwhile (``bench/meshtools.py`` measures both).
Variants are made in a child process of the replica (``serve_app.meshtools.isolated``:
pymeshlab apart from VTK, stopped at ``mesh_tools.timeout_s``), previews in its threads.
Variants are asked for by the registry (which makes each once, whoever asks); previews by
the ingress, which serves the stored PNG.
"""

from __future__ import annotations

from dataclasses import dataclass

from ray.serve.handle import DeploymentHandle

from deployments.worker import lower_priority
from serve_app.config import AppConfig
from serve_app.contracts.variants import VariantBuilt, VariantOrder
from serve_app.meshtools.isolated import IsolatedWorker
from serve_app.meshtools.variants import PreviewOrder
from serve_app.storage import ArtifactStore


class MeshTools:
    """Reads meshes from the store and writes what it makes there; returns only metadata."""

    def __init__(self, config: AppConfig) -> None:
        lower_priority(config.mesh_tools.deployment.niceness)
        self._limits = config.mesh_tools
        self._store = ArtifactStore(config.storage.root)
        self._child = IsolatedWorker("mesh-variants")

    def make_variant(self, order: VariantOrder) -> VariantBuilt:
        from serve_app.work.meshtools import make_variant

        limits = self._limits
        return self._child.call(
            make_variant, self._store, order, limits, timeout_s=limits.timeout_s
        )

    def render(self, order: PreviewOrder) -> None:
        """Render ``order`` into the store (unless it is there): the caller serves the file."""
        from serve_app.work.meshtools import render_to_store

        render_to_store(self._store, order)

    def check_health(self) -> None:
        self._store.check_writable()

    def __del__(self) -> None:
        child: IsolatedWorker | None = getattr(self, "_child", None)
        if child is not None:
            child.close()


@dataclass(frozen=True)
class PreviewRenderer:
    """How an ingress replica asks for a preview: the MeshTools handle."""

    handle: DeploymentHandle

    async def render(self, order: PreviewOrder) -> None:
        await self.handle.render.remote(order)
