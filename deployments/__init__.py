"""Ray Serve deployment classes and the JobRegistry actor: thin wrappers over serve_app.

The classes carry no resources or scaling; ``serve_app.app.build_app`` applies those from
the validated config.
"""

from deployments.background import BackgroundRemoval
from deployments.ingress import Ingress
from deployments.shape import ShapeTexture
from serve_app.registry.actor import JobRegistry, connect_registry

__all__ = ["BackgroundRemoval", "Ingress", "JobRegistry", "ShapeTexture", "connect_registry"]
