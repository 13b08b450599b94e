"""Ray Serve deployment classes and the RateLimiter actor: thin wrappers over serve_app.

The classes carry no resources or scaling; ``serve_app.app.build_app`` applies those from
the validated config, and creates the JobRegistry (``serve_app.registry``) and RateLimiter
actors the deployments find by name.
"""

from deployments.background import BackgroundRemoval
from deployments.ingress import Ingress
from deployments.limiter import RateLimiter
from deployments.meshtools import MeshTools
from deployments.shape import ShapeTexture
from deployments.text_to_image import TextToImage

__all__ = [
    "BackgroundRemoval",
    "Ingress",
    "MeshTools",
    "RateLimiter",
    "ShapeTexture",
    "TextToImage",
]
