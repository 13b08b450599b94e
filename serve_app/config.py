"""Typed application config: the ``args`` of the Serve application, strictly validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve_app.config_policies import RetentionConfig, SecurityConfig
from serve_app.contracts.text import MAX_GUIDANCE_SCALE, MAX_PIXELS, MAX_STEPS, MIN_SIDE
from serve_app.meshtools.config import MeshLimits
from serve_app.pipeline.config import PipelineConfig
from serve_app.webhooks.config import WebhookConfig


class StrictModel(BaseModel):
    """Unknown keys are errors, so a typo fails at deploy and names the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AutoscalingOptions(StrictModel):
    """Replica autoscaling of one deployment (Ray Serve's ``autoscaling_config``)."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    initial_replicas: int | None = Field(default=None, ge=0)
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    upscale_delay_s: float = Field(default=30.0, ge=0)
    downscale_delay_s: float = Field(default=600.0, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        if self.initial_replicas is not None and not (
            self.min_replicas <= self.initial_replicas <= self.max_replicas
        ):
            raise ValueError("initial_replicas must lie between min_replicas and max_replicas")
        return self


class DeploymentOptions(StrictModel):
    """Scaling, resources and lifecycle of one deployment, applied by ``build_app``."""

    num_replicas: int | None = Field(
        default=None, ge=1, description="fixed replica count (1 when neither is set)"
    )
    autoscaling: AutoscalingOptions | None = Field(
        default=None, description="autoscale between min and max replicas instead"
    )
    max_ongoing_requests: int = Field(default=5, ge=1)
    max_queued_requests: int = Field(
        default=1000, ge=-1, description="requests queued at each caller; -1: unbounded"
    )
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    accelerator_type: str | None = Field(
        default=None, description='Ray accelerator type, e.g. "GeForce-RTX-5090"'
    )
    memory_bytes: int | None = Field(default=None, gt=0)
    graceful_shutdown_wait_loop_s: float = Field(default=2.0, gt=0)
    graceful_shutdown_timeout_s: float = Field(default=20.0, gt=0)
    health_check_period_s: float = Field(default=10.0, gt=0)
    health_check_timeout_s: float = Field(default=30.0, gt=0)
    access_log: bool = Field(default=True, description="log one line per request")
    niceness: int = Field(
        default=0,
        ge=0,
        le=19,
        description="added to the replica's Unix niceness: compute replicas sharing CPUs "
        "with the ingress yield to it, so the API stays responsive under load",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.num_replicas is not None and self.autoscaling is not None:
            raise ValueError("set either num_replicas or autoscaling, not both")
        if self.accelerator_type and self.num_gpus == 0:
            raise ValueError("accelerator_type needs num_gpus > 0")
        return self

    def serve_options(self, name: str) -> dict[str, Any]:
        """Keyword arguments for ``serve.deployment``."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.accelerator_type:
            actor["accelerator_type"] = self.accelerator_type
        if self.memory_bytes:
            actor["memory"] = self.memory_bytes
        options: dict[str, Any] = {
            "name": name,
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "graceful_shutdown_wait_loop_s": self.graceful_shutdown_wait_loop_s,
            "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
            "health_check_period_s": self.health_check_period_s,
            "health_check_timeout_s": self.health_check_timeout_s,
        }
        if not self.access_log:  # otherwise the application's logging_config applies
            options["logging_config"] = {"enable_access_log": False}
        if self.autoscaling is not None:
            options["autoscaling_config"] = self.autoscaling.model_dump(exclude_none=True)
        else:
            options["num_replicas"] = self.num_replicas or 1
        return options


class StorageConfig(StrictModel):
    """Where artifacts live: a local directory, or a shared mount on a cluster."""

    root: Path = Field(default=Path("data"), description="ArtifactStore root directory")
    min_free_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        description="free space the root's file system keeps: below it, readiness reports "
        "storage failing and new uploads and jobs are refused 507 storage_full",
    )


class ActorOptions(StrictModel):
    """Ray options of a named, detached actor that ``build_app`` creates beside the graph."""

    num_cpus: float = Field(default=0.0, ge=0)
    max_concurrency: int = Field(
        default=1000, ge=1, description="calls the (async) actor serves at once"
    )
    max_restarts: int = Field(
        default=-1, ge=-1, description="restarts after its process dies; -1: always"
    )

    def ray_options(self, name: str, namespace: str) -> dict[str, Any]:
        """Keyword arguments for ``ray.remote(cls).options``: created once, then reused."""
        return {
            "name": name,
            "namespace": namespace,
            "lifetime": "detached",
            "get_if_exists": True,
            "num_cpus": self.num_cpus,
            "max_concurrency": self.max_concurrency,
            "max_restarts": self.max_restarts,
        }


class RegistryConfig(StrictModel):
    """The JobRegistry actor: its name, namespace, Ray options and limits."""

    name: str = Field(default="job_registry", min_length=1)
    namespace: str = Field(default="orfeas", min_length=1)
    actor: ActorOptions = Field(default_factory=ActorOptions)
    max_jobs: int = Field(default=10_000, ge=1, description="jobs kept in memory")
    heartbeat_interval_s: float = Field(default=0.25, gt=0, le=10)
    heartbeat_budget_per_s: float = Field(
        default=400.0,
        gt=0,
        description="heartbeats per second the registry asks of all running workers together: "
        "with more leases than budget × heartbeat_interval_s, each beats every "
        "leases / budget seconds instead (a cancel waits for that beat)",
    )
    journal_path: Path | None = Field(
        default=None,
        description="SQLite journal of every job change; default <storage.root>/registry/"
        "journal.sqlite3 (a local disk or a mount with working file locks)",
    )
    lease_s: float = Field(
        default=10.0,
        gt=0,
        description="a running job whose worker sends no heartbeat for "
        "this long is retried or failed",
    )
    queue_timeout_s: float = Field(
        default=600.0, gt=0, description="longest wait of a dispatched job for a free worker"
    )
    max_retries: int = Field(
        default=1, ge=0, le=10, description="re-runs of a job whose worker was lost"
    )
    max_active_jobs: int = Field(
        default=200, ge=1, description="accepted jobs queued or running; beyond: 503"
    )
    max_active_per_client: int = Field(
        default=50, ge=1, description="one client's (API key or IP) share of them; beyond: 429"
    )
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After of a 503 or 429")
    watchdog_interval_s: float = Field(default=2.0, gt=0, le=60)
    resume_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="after a registry restart, how long its in-flight "
        "runs wait for the workers before they fail as interrupted",
    )
    status_staleness_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="an ingress replica answers status and job lists from its own "
        "snapshots while it has heard from the registry's change feed within this; "
        "beyond it, each read asks the registry",
    )

    @model_validator(mode="after")
    def _shares(self) -> Self:
        if self.max_active_per_client > self.max_active_jobs:
            raise ValueError("max_active_per_client exceeds max_active_jobs")
        if self.lease_s <= 2 * self.heartbeat_interval_s:
            raise ValueError("lease_s must exceed two heartbeat intervals")
        return self


class RateLimiterConfig(StrictModel):
    """The RateLimiter actor that holds the token buckets every ingress replica shares.

    Created by ``build_app`` only when ``security`` sets a rate limit, in the registry's
    namespace.
    """

    name: str | None = Field(
        default=None, min_length=1, description="default: <registry.name>_rate_limiter"
    )
    actor: ActorOptions = Field(default_factory=ActorOptions)


def _default_ingress() -> DeploymentOptions:
    return DeploymentOptions(
        num_cpus=0.25,
        max_queued_requests=1000,
        max_ongoing_requests=100,
        autoscaling=AutoscalingOptions(min_replicas=1, max_replicas=2, target_ongoing_requests=32),
    )


def _default_background() -> DeploymentOptions:
    return DeploymentOptions(num_cpus=1.0, max_ongoing_requests=2)


def _default_shape() -> DeploymentOptions:
    # Two runs per replica: one job's CPU tail overlaps the next one's GPU section.
    return DeploymentOptions(
        num_cpus=1.0, max_ongoing_requests=2, graceful_shutdown_timeout_s=300.0
    )


def _default_mesh_tools() -> DeploymentOptions:
    return DeploymentOptions(num_cpus=1.0, max_ongoing_requests=2, max_queued_requests=100)


def _default_text_to_image() -> DeploymentOptions:
    return DeploymentOptions(
        num_cpus=1.0,
        max_ongoing_requests=1,
        graceful_shutdown_timeout_s=300.0,
        autoscaling=AutoscalingOptions(min_replicas=1, max_replicas=1, target_ongoing_requests=1),
    )


class TextToImageConfig(StrictModel):
    """The TextToImage deployment: a diffusers pipeline from a local directory, when set."""

    model_path: Path | None = Field(
        default=None,
        description="a diffusers pipeline directory (model_index.json, unet/ or transformer/, "
        "vae/, text_encoder/, tokenizer/, scheduler/); unset: no text-to-image",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        default="auto", description="auto: float16 on CUDA, float32 on the CPU"
    )
    max_pixels: int = Field(
        default=1024 * 1024, ge=MIN_SIDE * MIN_SIDE, le=MAX_PIXELS, description="width × height"
    )
    default_steps: int = Field(default=30, ge=1, le=MAX_STEPS)
    max_steps: int = Field(default=50, ge=1, le=MAX_STEPS)
    default_guidance_scale: float = Field(default=7.0, ge=0.0, le=MAX_GUIDANCE_SCALE)
    deployment: DeploymentOptions = Field(default_factory=_default_text_to_image)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.default_steps > self.max_steps:
            raise ValueError(
                f"default_steps ({self.default_steps}) exceeds max_steps ({self.max_steps})"
            )
        if self.device == "cpu" and self.dtype == "float16":
            raise ValueError("dtype float16 needs device cuda (or auto): use float32 on the CPU")
        return self


class MeshToolsConfig(MeshLimits):
    """The mesh tools: limits on the mesh files they read, and the MeshTools deployment that
    makes variants (optimize, material) and renders previews, off the ingress."""

    timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="longest wait for one variant or preview; the sizes above bound the work",
    )
    max_variants_per_job: int = Field(
        default=50, ge=1, le=1000, description="variants one job's model may have; beyond: 409"
    )
    deployment: DeploymentOptions = Field(default_factory=_default_mesh_tools)


class AppConfig(StrictModel):
    """Everything ``build_app`` needs; the ``args`` block of a Serve config file."""

    storage: StorageConfig = Field(default_factory=StorageConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    ingress: DeploymentOptions = Field(default_factory=_default_ingress)
    background_removal: DeploymentOptions = Field(default_factory=_default_background)
    shape_texture: DeploymentOptions = Field(default_factory=_default_shape)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    rate_limiter: RateLimiterConfig = Field(default_factory=RateLimiterConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    text_to_image: TextToImageConfig = Field(default_factory=TextToImageConfig)
    mesh_tools: MeshToolsConfig = Field(default_factory=MeshToolsConfig)
    webhooks: WebhookConfig = Field(default_factory=WebhookConfig)

    @model_validator(mode="after")
    def _bounded_queues(self) -> Self:
        if self.ingress.max_queued_requests == -1:
            raise ValueError(
                "ingress.max_queued_requests must be bounded: the proxy must never queue "
                "without limit"
            )
        workers = {
            "background_removal": self.background_removal,
            "shape_texture": self.shape_texture,
        }
        if self.text_to_image.model_path is not None:  # bound into the graph only then
            workers["text_to_image.deployment"] = self.text_to_image.deployment
        for name, options in workers.items():
            queued = options.max_queued_requests
            if queued != -1 and queued < self.registry.max_active_jobs:
                raise ValueError(
                    f"{name}.max_queued_requests ({queued}) is below registry.max_active_jobs "
                    f"({self.registry.max_active_jobs}): accepted jobs could be refused"
                )
        return self

    @property
    def rate_limiter_name(self) -> str:
        return self.rate_limiter.name or f"{self.registry.name}_rate_limiter"

    def resolved(self, base: Path) -> Self:
        """A copy with relative paths made absolute against ``base``."""
        storage = self.storage.model_copy(update={"root": _absolute(self.storage.root, base)})
        pipeline = self.pipeline.resolved(base)
        update: dict[str, Any] = {"storage": storage, "pipeline": pipeline}
        if self.text_to_image.model_path is not None:
            model_path = _absolute(self.text_to_image.model_path, base)
            update["text_to_image"] = self.text_to_image.model_copy(
                update={"model_path": model_path}
            )
        if self.registry.journal_path is not None:
            journal = _absolute(self.registry.journal_path, base)
            update["registry"] = self.registry.model_copy(update={"journal_path": journal})
        return self.model_copy(update=update)


def background_model_file(pipeline: PipelineConfig) -> Path:
    """The ONNX file of ``pipeline.background_model`` in ``pipeline.models_dir``."""
    return pipeline.models_dir / f"{pipeline.background_model}.onnx"


def _absolute(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()
