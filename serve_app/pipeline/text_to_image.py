"""Text to image: a diffusers pipeline from a local model directory, with progress and cancel.

The directory is a diffusers pipeline as ``save_pretrained`` writes it (SD 1.5, SDXL,
SD-Turbo, FLUX and the like)::

    model_index.json          the pipeline class and its components
    unet/ or transformer/     config.json + *.safetensors (or *.bin)
    vae/                      config.json + weights
    text_encoder/ (…_2/)      config.json + weights
    tokenizer/ (…_2/)         tokenizer files
    scheduler/                scheduler_config.json

It is loaded with the hub off and never downloads; torch and diffusers are imported here,
on first use, never by the ingress.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from serve_app.contracts.runs import TextModel
from serve_app.contracts.text import MAX_PIXELS, TextToImageParams
from serve_app.errors import (
    JobCancelledError,
    ModelUnavailableError,
    ValidationFailedError,
)
from serve_app.pipeline.text_params import (
    check_limits,
    describe_prompt,
    with_defaults,
    with_size,
)
from serve_app.pipeline.types import CancelToken

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

SETTING = "text_to_image.model_path"
#: Files that make a sub-folder a loadable component (a model, scheduler, tokenizer, ...).
COMPONENT_CONFIGS = (
    "config.json",
    "scheduler_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "preprocessor_config.json",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin")

StepCallback = Callable[[int, int], None]
"""``on_step(done, total)``: ``done`` denoising steps of ``total`` are finished."""

Device = Literal["auto", "cpu", "cuda"]
DType = Literal["auto", "float16", "bfloat16", "float32"]


def no_steps(done: int, total: int) -> None:
    """A step callback that ignores every report."""


@dataclass(frozen=True)
class ModelDirectory:
    """A checked diffusers pipeline directory: its class and the components it loads."""

    path: Path
    pipeline_class: str
    components: tuple[str, ...]
    has_safety_checker: bool


def check_model_dir(path: Path) -> ModelDirectory:
    """The pipeline directory at ``path``, or a ModelUnavailableError naming what is missing.

    Checks ``model_index.json`` and, for every component it lists, its sub-folder: a
    config file, and weights for a model (a sub-folder with ``config.json``).
    """
    path = Path(path)

    def missing(what: str) -> ModelUnavailableError:
        return ModelUnavailableError(
            f"the text-to-image model directory {path} is incomplete: {what}", setting=SETTING
        )

    if not path.is_dir():
        raise ModelUnavailableError(
            f"the text-to-image model directory {path} does not exist", setting=SETTING
        )
    index_path = path / "model_index.json"
    if not index_path.is_file():
        raise missing("model_index.json is missing (not a diffusers pipeline directory)")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        pipeline_class = str(index["_class_name"])
    except (ValueError, KeyError, TypeError):
        raise missing("model_index.json is not a diffusers pipeline index") from None
    components = tuple(
        sorted(
            name
            for name, value in index.items()
            if not name.startswith("_")
            and isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, str) for v in value)
        )
    )
    if not components:
        raise missing("model_index.json lists no components")
    for name in components:
        folder = path / name
        if not folder.is_dir():
            raise missing(f"the sub-folder {name}/ is missing")
        present = {entry.name for entry in folder.iterdir() if entry.is_file()}
        if not present & set(COMPONENT_CONFIGS):
            raise missing(f"{name}/ has no config file ({', '.join(COMPONENT_CONFIGS)})")
        if "config.json" in present and not any(n.endswith(WEIGHT_SUFFIXES) for n in present):
            raise missing(f"{name}/ has no weights (*.safetensors or *.bin)")
    return ModelDirectory(
        path=path,
        pipeline_class=pipeline_class,
        components=components,
        has_safety_checker="safety_checker" in components,
    )


def model_digest(model: ModelDirectory) -> str:
    """The sha256 hex of everything the pipeline loads: ``model_index.json`` and every file
    (configs, tokenizer files, weights) in its components' sub-folders, with their paths.

    Read once per load; a changed config or a single changed weight gives another digest.
    Hidden files (``.cache/``, ``.git/``) and files outside the components do not count.
    """
    digest = hashlib.sha256()
    files = [model.path / "model_index.json"]
    for name in model.components:
        for dirpath, dirnames, filenames in os.walk(model.path / name):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    for file in files:
        relative = file.relative_to(model.path).as_posix()
        digest.update(f"{relative}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def select_device(device: Device, dtype: DType) -> tuple[str, str]:
    """``(device, dtype)`` names: auto picks CUDA when present; auto dtype is float16 on
    CUDA and float32 on the CPU."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError(
            "text_to_image.device is cuda but no CUDA device is visible", setting=SETTING
        )
    if dtype == "auto":
        dtype = "float16" if device == "cuda" else "float32"
    return device, dtype


class TextToImageBackend:
    """One loaded text-to-image pipeline, used by one generation at a time (a lock).

    ``version`` is ``<digest[:16]>-<dtype>``: the model directory's digest and the compute
    dtype, read once at load; it is the model part of every image cache key.
    """

    def __init__(
        self,
        model_path: Path,
        device: Device = "auto",
        dtype: DType = "auto",
        *,
        max_pixels: int = MAX_PIXELS,
        max_steps: int = 50,
        default_steps: int = 30,
        default_guidance_scale: float = 7.0,
    ) -> None:
        model = check_model_dir(model_path)
        self.device, self.dtype = select_device(device, dtype)
        self.max_pixels = max_pixels
        self.max_steps = max_steps
        self.default_steps = default_steps
        self.default_guidance_scale = default_guidance_scale
        self.pipeline_class = model.pipeline_class
        self.model_path = model.path
        self.version = f"{model_digest(model)[:16]}-{self.dtype}"
        self._pipe = _load_pipeline(model, self.device, self.dtype)
        self.native_size = _native_size(self._pipe)
        self._negative_prompts = "negative_prompt" in inspect.signature(self._pipe).parameters
        self._lock = threading.Lock()
        logger.info(
            "text-to-image model %s (%s) loaded on %s in %s, version %s",
            model.path,
            model.pipeline_class,
            self.device,
            self.dtype,
            self.version,
        )

    @property
    def model(self) -> TextModel:
        """What the registry is told of this model (for the image cache keys it checks)."""
        return TextModel(version=self.version, native_size=self.native_size)

    def resolve(self, params: TextToImageParams) -> TextToImageParams:
        """``params`` with every unset value filled in (seed, steps, guidance, size), after
        checking them against this deployment's limits (a 422 naming the field)."""
        filled = with_defaults(params, self.default_steps, self.default_guidance_scale)
        resolved = with_size(filled, self.native_size)
        check_limits(resolved, self.max_pixels, self.max_steps)
        if resolved.negative_prompt is not None and not self._negative_prompts:
            raise ValidationFailedError(
                f"negative_prompt: {self.pipeline_class} takes no negative prompt",
                fields=[{"loc": ["body", "negative_prompt"], "message": "not supported"}],
            )
        return resolved

    def generate(
        self,
        params: TextToImageParams,
        on_step: StepCallback = no_steps,
        cancel: CancelToken | None = None,
    ) -> tuple[Image.Image, TextToImageParams]:
        """One image for ``params`` (resolved first) and the parameters actually used.

        ``on_step(done, total)`` after every denoising step; a set ``cancel`` stops the run
        between steps with JobCancelledError. The noise comes from a CPU ``torch.Generator``
        seeded with the request's seed, so a seed gives the same noise on every device.
        """
        import torch

        params = self.resolve(params)
        seed, steps = params.seed, params.steps
        assert seed is not None and steps is not None

        def step_end(
            pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]
        ) -> dict[str, Any]:
            total = int(getattr(pipe, "num_timesteps", None) or steps)
            on_step(step + 1, total)
            if cancel is not None and cancel.cancelled:
                raise JobCancelledError("the job was cancelled")
            return tensors

        arguments: dict[str, Any] = {
            "prompt": params.prompt,
            "num_inference_steps": steps,
            "guidance_scale": params.guidance_scale,
            "width": params.width,
            "height": params.height,
            "output_type": "pil",
            "callback_on_step_end": step_end,
        }
        if params.negative_prompt is not None:
            arguments["negative_prompt"] = params.negative_prompt
        with self._lock:
            if cancel is not None:
                cancel.raise_if_cancelled()
            logger.info(
                "text to image: prompt %s, negative %s, seed %d, %d steps, %dx%d",
                describe_prompt(params.prompt),
                describe_prompt(params.negative_prompt),
                seed,
                steps,
                params.width,
                params.height,
            )
            arguments["generator"] = torch.Generator(device="cpu").manual_seed(seed)
            image: Image.Image = self._pipe(**arguments).images[0]
        return image.convert("RGB"), params


def _load_pipeline(model: ModelDirectory, device: str, dtype: str) -> Any:
    """``AutoPipelineForText2Image`` from the directory, hub off, on ``device``."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import torch
    import transformers
    from diffusers import AutoPipelineForText2Image
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # a replica's log is no terminal
    transformers.utils.logging.disable_progress_bar()
    extra: dict[str, Any] = {}
    if model.has_safety_checker:  # never loaded: a service-wide content policy is the operator's
        extra = {"safety_checker": None, "requires_safety_checker": False}
    try:
        pipe = AutoPipelineForText2Image.from_pretrained(
            str(model.path), dtype=getattr(torch, dtype), local_files_only=True, **extra
        )
        pipe = pipe.to(device)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        raise ModelUnavailableError(
            f"could not load the text-to-image model from {model.path}: {detail[:500]}",
            setting=SETTING,
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _native_size(pipe: Any) -> int:
    """The pipeline's default image side in pixels (512 for SD 1.5, 1024 for SDXL/FLUX)."""
    sample = getattr(pipe, "default_sample_size", None)
    if sample is None and getattr(pipe, "unet", None) is not None:
        sample = pipe.unet.config.sample_size
    scale = int(getattr(pipe, "vae_scale_factor", 8))
    if not isinstance(sample, int):
        return 512
    return max(64, sample * scale // 8 * 8)
