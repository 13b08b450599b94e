"""ORFEAS Serve: photo (or prompt) in, textured 3D model out, served with Ray Serve."""

__version__ = "0.1.0"
