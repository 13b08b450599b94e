"""Configuration of the generation pipeline (models, generator, input limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve_app.contracts.params import GeneratorName


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


class InflateSettings(BaseModel):
    """The embedded ``inflate`` generator: no settings (it runs on ``pipeline.device``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Hunyuan3DSettings(BaseModel):
    """The ``hunyuan3d`` generator: Tencent's Hunyuan3D-2 shape model, from a local directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: Path = Field(
        description="directory holding hy3dgen's config.yaml and the weights as published "
        "(model.fp16.safetensors; model.safetensors or model.ckpt also accepted), e.g. "
        "tencent/Hunyuan3D-2's hunyuan3d-dit-v2-0 folder; never downloaded"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when available"
    )
    dtype: Literal["auto", "float16", "float32", "bfloat16"] = Field(
        default="auto", description="auto: float16 on CUDA, float32 on the CPU"
    )
    postprocess: Literal["pymeshlab", "fast-simplification"] = Field(
        default="pymeshlab",
        description="mesh clean-up and face reduction: pymeshlab (floaters, degenerate "
        "faces, quadric decimation) or fast-simplification (same steps with trimesh)",
    )
    variant: Literal["standard", "fast", "turbo"] = Field(
        default="standard",
        description="the checkpoint's kind, which sets the defaults per quality: standard "
        "(hunyuan3d-dit-v2-0, -mini), fast (guidance-distilled, -fast) or turbo "
        "(step-distilled, -turbo: 5 steps at every quality)",
    )
    vae_path: Path | None = Field(
        default=None,
        description="a separately published VAE directory (config.yaml and "
        "model.fp16.safetensors, e.g. hunyuan3d-vae-v2-0-turbo), loaded in place of the "
        "checkpoint's own; never downloaded",
    )
    decoder: Literal["flashvdm", "dense", "auto"] = Field(
        default="auto",
        description="volume decoding: flashvdm (hierarchical, adaptive key-value selection), "
        "dense (every grid point), or auto: the one measured faster on the replica's device "
        "for this VAE (flashvdm on CUDA; on the CPU dense for a small VAE)",
    )
    topk_mode: Literal["mean", "merge"] = Field(
        default="mean",
        description="flashvdm: how the keys each block of queries attends to are chosen "
        "(hy3dgen's topk_mode)",
    )
    adaptive_kv_selection: bool = Field(
        default=True,
        description="flashvdm: attend to the selected keys only (off: hierarchical decoding "
        "over every key)",
    )


class GeneratorsConfig(BaseModel):
    """The enabled shape generators, by name; ``inflate`` is always enabled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inflate: InflateSettings = Field(default_factory=InflateSettings)
    hunyuan3d: Hunyuan3DSettings | None = Field(
        default=None, description="enables hunyuan3d; needs model_path"
    )
    hunyuan3d_mv: Hunyuan3DSettings | None = Field(
        default=None,
        description="enables hunyuan3d_mv (Hunyuan3D-2mv: the shape from the front, left, "
        "back and right views); needs model_path, e.g. tencent/Hunyuan3D-2mv's "
        "hunyuan3d-dit-v2-mv folder",
    )

    def enabled(self) -> list[str]:
        """Names of the enabled generators, inflate first."""
        names = [GeneratorName.INFLATE.value]
        if self.hunyuan3d is not None:
            names.append(GeneratorName.HUNYUAN3D.value)
        if self.hunyuan3d_mv is not None:
            names.append(GeneratorName.HUNYUAN3D_MV.value)
        return names


#: The baker's recipe: raised when what it makes changes, so that models cached before are
#: made again (it is part of every cache key, through ``PipelineConfig.texture_version``).
BAKE_RECIPE = 3


class TextureSettings(BaseModel):
    """How the texturer treats what the photos do not show."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    back: Literal["fill", "mirror"] = Field(
        default="fill",
        description="with a front photo alone: fill (the unseen surface takes the colours "
        "of the seen surface around it, diffused over the mesh) or mirror (the back shows "
        "the front photo mirrored, as if it were a back photo)",
    )


class PipelineConfig(BaseModel):
    """Which models the pipeline loads and where from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models_dir: Path = Field(default=Path("models"), description="holds u2netp.onnx")
    background_model: Literal["u2netp"] = "u2netp"
    generator: str = Field(
        default=GeneratorName.INFLATE.value,
        description="the default shape generator; one of those enabled",
    )
    generators: GeneratorsConfig = Field(default_factory=GeneratorsConfig)
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="where inflate runs (hunyuan3d has its own device)"
    )
    limits: ImageLimits = Field(default_factory=ImageLimits)
    texturer: Literal["bake"] = Field(
        default="bake",
        description="the texturer: bake (a UV atlas baked from every view the job has)",
    )
    texture: TextureSettings = Field(default_factory=TextureSettings)

    @property
    def texture_version(self) -> str:
        """What a model's cache key carries of its texturing: the texturer, its recipe and
        what it does with unseen surface."""
        return f"{self.texturer}-{BAKE_RECIPE}-{self.texture.back}"

    @model_validator(mode="after")
    def _default_is_enabled(self) -> PipelineConfig:
        enabled = self.generators.enabled()
        if self.generator not in enabled:
            raise ValueError(
                f"generator {self.generator!r} is not enabled; enabled: {', '.join(enabled)}"
                + (
                    " (hunyuan3d needs generators.hunyuan3d.model_path)"
                    if self.generator == GeneratorName.HUNYUAN3D
                    else ""
                )
            )
        return self

    def resolved(self, base: Path) -> PipelineConfig:
        """A copy with relative paths made absolute against ``base``."""
        update: dict[str, object] = {"models_dir": _absolute(self.models_dir, base)}
        generators: dict[str, object] = {}
        for name in ("hunyuan3d", "hunyuan3d_mv"):
            settings = getattr(self.generators, name)
            if settings is not None:
                paths: dict[str, object] = {"model_path": _absolute(settings.model_path, base)}
                if settings.vae_path is not None:
                    paths["vae_path"] = _absolute(settings.vae_path, base)
                generators[name] = settings.model_copy(update=paths)
        if generators:
            update["generators"] = self.generators.model_copy(update=generators)
        return self.model_copy(update=update)


def _absolute(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()
