"""Configuration of the generation pipeline (models, generator, input limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ImageLimits(BaseModel):
    """Limits applied to an input image before its pixels are decoded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_pixels: int = Field(default=40_000_000, gt=0, description="width × height")
    max_side: int = Field(default=8192, gt=0)
    min_side: int = Field(default=16, gt=0)

    @model_validator(mode="after")
    def _sides(self) -> ImageLimits:
        if self.min_side > self.max_side:
            raise ValueError("min_side must not exceed max_side")
        return self


class PipelineConfig(BaseModel):
    """Which models the pipeline loads and where from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models_dir: Path = Field(default=Path("models"), description="holds u2netp.onnx")
    background_model: Literal["u2netp"] = "u2netp"
    generator: str = Field(default="inflate", description="shape generator, by name")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    limits: ImageLimits = Field(default_factory=ImageLimits)
