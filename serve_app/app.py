"""The application builder: ``serve_app.app:build_app`` reads the whole graph in one place."""

# No ``from __future__ import annotations`` here: Ray Serve inspects the builder's
# parameter annotation (a class) to validate the config's ``args`` into AppConfig.

from pathlib import Path

from ray import serve
from ray.serve import Application, Deployment

from serve_app.config import AppConfig, DeploymentOptions


def build_app(args: AppConfig) -> Application:
    """The five parts, from validated config:

    - the JobRegistry actor (named, detached; created unless it exists, then given this
      config) and, when rate limits are set, the RateLimiter actor beside it; the
      deployments find both by their configured names;
    - Ingress → (BackgroundRemoval, ShapeTexture, MeshTools), each with its scaling and
      resources; TextToImage beside them only when ``text_to_image.model_path`` is set (its
      replicas run with the model hub off). The ingress hands the worker handles to the
      registry once, as it starts: the registry runs jobs through BackgroundRemoval,
      ShapeTexture (and TextToImage) and makes model variants with MeshTools; the ingress asks
      MeshTools for previews itself.

    ``args`` is the ``args`` block of a Serve config, validated strictly; relative paths
    are resolved against the directory the application is built from.
    """
    from deployments import BackgroundRemoval, Ingress, MeshTools, ShapeTexture, TextToImage
    from deployments.limiter import create_limiter
    from serve_app.registry.client import create_registry

    config = args if isinstance(args, AppConfig) else AppConfig.model_validate(args)
    config = config.resolved(Path.cwd())
    create_registry(config)
    if config.security.rate_limited:
        create_limiter(config)
    background = deployment(BackgroundRemoval, config.background_removal).bind(config)
    shape = deployment(ShapeTexture, config.shape_texture).bind(config)
    mesh_tools = deployment(MeshTools, config.mesh_tools.deployment).bind(config)
    text = None
    if config.text_to_image.model_path is not None:
        options = config.text_to_image.deployment
        text = deployment(TextToImage, options, env=OFFLINE_HUB).bind(config)
    return deployment(Ingress, config.ingress).bind(config, background, shape, mesh_tools, text)


#: The environment of replicas that load Hugging Face models: nothing is downloaded.
OFFLINE_HUB = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def deployment(
    cls: type, options: DeploymentOptions, env: dict[str, str] | None = None
) -> Deployment:
    """``cls`` as a Serve deployment named after it, with scaling and resources from config
    and ``env`` added to its replicas' environment variables."""
    serve_options = options.serve_options(cls.__name__)
    if env:
        serve_options["ray_actor_options"]["runtime_env"] = {"env_vars": dict(env)}
    return serve.deployment(**serve_options)(cls)
