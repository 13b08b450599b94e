"""The ``hunyuan3d`` generator: Tencent's Hunyuan3D-2 shape model (hy3dgen) from a local directory.

Loading reads only ``model_path``: hy3dgen's ``config.yaml`` and the weights as published
(``model.fp16.safetensors``; ``model.safetensors`` or ``model.ckpt`` also accepted), through
``Hunyuan3DDiTFlowMatchingPipeline.from_single_file``. The hub is off in the process
(``HF_HUB_OFFLINE=1``) and the config is checked first: every class it names is hy3dgen's, and
the image encoder's architecture is inline (a hub model id there would be a download), so a
missing, incomplete or corrupt directory is an error naming the path, never a download.

A run: the cut-out (RGBA, straight alpha) → hy3dgen's image processor and conditioner → the
flow-matching denoiser, one progress report and one cancel check per step (the pipeline's
``callback``) → volume decoding, one report and check per chunk of queries (a forward
pre-hook on the VAE's geometry decoder, which the volume decoder calls once per chunk) →
marching cubes → clean-up and face reduction (:mod:`serve_app.pipeline.meshclean`) → the
mesh placed over the subject in image pixel units, so texturing projects the photo onto it.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from serve_app.contracts.params import GenerationParams, GeneratorName
from serve_app.contracts.stages import Stage as S
from serve_app.errors import (
    GpuOutOfMemoryError,
    ModelUnavailableError,
    NoSubjectError,
    NoSurfaceError,
    OrfeasError,
)
from serve_app.pipeline.config import Hunyuan3DSettings
from serve_app.pipeline.meshclean import clean_mesh
from serve_app.pipeline.types import CancelToken, CutOut, Mesh, ProgressCallback

logger = logging.getLogger(__name__)

#: Weight files accepted in ``model_path``, in order of preference (the first is published).
WEIGHT_FILES = ("model.fp16.safetensors", "model.safetensors", "model.ckpt")
CONFIG_FILE = "config.yaml"
#: Sections of hy3dgen's config.yaml, each ``{target: <class>, params: {...}}``.
CONFIG_SECTIONS = ("model", "vae", "conditioner", "scheduler", "image_processor")
#: Components whose weights the checkpoint must hold (keys prefixed ``<name>.``).
WEIGHT_PREFIXES = ("model", "vae", "conditioner")
#: Half side of the cube the occupancy field is decoded in (hy3dgen's default).
BOX_V = 1.01
#: Bumped when what this module does around hy3dgen changes the mesh.
RECIPE = 1

#: Progress within the shape stage: conditioning, denoising, decoding, extraction, clean-up.
DENOISE_BAND = (0.02, 0.60)
DECODE_BAND = (0.60, 0.88)
CLEAN_START = 0.94

DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelFiles:
    """The files of a model directory that loading uses."""

    config: Path
    weights: Path


def find_model_files(model_path: Path) -> ModelFiles:
    """``config.yaml`` and the weight file in ``model_path``; a clear error naming what is
    missing otherwise."""
    if not model_path.is_dir():
        raise ModelUnavailableError(
            f"hunyuan3d: model directory {model_path} does not exist (or is not a directory)",
            path=str(model_path),
        )
    config = model_path / CONFIG_FILE
    if not config.is_file():
        raise ModelUnavailableError(
            f"hunyuan3d: missing {config} (hy3dgen's config.yaml)", path=str(config)
        )
    for name in WEIGHT_FILES:
        if (model_path / name).is_file():
            return ModelFiles(config=config, weights=model_path / name)
    raise ModelUnavailableError(
        f"hunyuan3d: no weights in {model_path}: expected {' or '.join(WEIGHT_FILES)}",
        path=str(model_path / WEIGHT_FILES[0]),
    )


def read_config(path: Path) -> dict[str, Any]:
    """hy3dgen's config, checked so that loading it instantiates only hy3dgen's classes and
    downloads nothing; a corrupt or unexpected file is an error naming it."""

    def corrupt(why: str) -> ModelUnavailableError:
        return ModelUnavailableError(f"hunyuan3d: corrupt config {path}: {why}", path=str(path))

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise corrupt(f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise corrupt("expected a mapping of " + ", ".join(CONFIG_SECTIONS))
    for section in CONFIG_SECTIONS:
        entry = config.get(section)
        if not isinstance(entry, dict) or not isinstance(entry.get("target"), str):
            raise corrupt(f"section {section!r} with a 'target' class is missing")
        if not entry["target"].startswith("hy3dgen.shapegen."):
            raise corrupt(f"{section}.target {entry['target']!r} is not a hy3dgen.shapegen class")
        if not isinstance(entry.get("params", {}), dict):
            raise corrupt(f"{section}.params must be a mapping")
    encoders = config["conditioner"].get("params", {})
    for name, encoder in encoders.items():
        kwargs = encoder.get("kwargs", {}) if isinstance(encoder, dict) else None
        if not isinstance(kwargs, dict) or not isinstance(kwargs.get("config"), dict):
            raise corrupt(
                f"conditioner.params.{name} must hold its encoder's architecture inline "
                "(kwargs.config, as the published config does); a hub model id would be "
                "downloaded"
            )
    return config


def check_weights(path: Path) -> None:
    """A safetensors checkpoint must hold the denoiser, the VAE and the image encoder."""
    if path.suffix != ".safetensors":
        return
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            prefixes = {key.split(".", 1)[0] for key in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise ModelUnavailableError(
            f"hunyuan3d: unreadable weights {path}: {exc}", path=str(path)
        ) from None
    missing = [p for p in WEIGHT_PREFIXES if p not in prefixes]
    if missing:
        raise ModelUnavailableError(
            f"hunyuan3d: weights {path} hold no {', '.join(missing)} tensors "
            f"(keys must be prefixed {', '.join(p + '.' for p in WEIGHT_PREFIXES)})",
            path=str(path),
        )


def model_digest(files: ModelFiles) -> str:
    """sha256 of the config and the weights (read in 8 MiB blocks)."""
    digest = hashlib.sha256()
    for path in (files.config, files.weights):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            while block := f.read(8 << 20):
                digest.update(block)
    return digest.hexdigest()


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError(
            "hunyuan3d: device 'cuda' is configured but CUDA is not available"
        )
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]


class Hunyuan3DGenerator:
    """Hunyuan3D-2's shape model behind the shape-generator interface.

    Loads once (at construction); ``generate`` serves one run at a time (the replica's lock).
    """

    name = GeneratorName.HUNYUAN3D.value

    def __init__(self, settings: Hunyuan3DSettings) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # nothing below may reach a model hub
        self.settings = settings
        self.files = find_model_files(settings.model_path)
        read_config(self.files.config)
        check_weights(self.files.weights)
        self.device = pick_device(settings.device)
        self.dtype = pick_dtype(settings.dtype, self.device)
        self.version = self._version()
        self.pipeline = self._load()
        logger.info(
            "hunyuan3d loaded from %s on %s (%s), version %s",
            self.files.weights,
            self.device,
            str(self.dtype).removeprefix("torch."),
            self.version,
        )

    def _version(self) -> str:
        """Changes with the config, the weights, hy3dgen, the dtype and this module's recipe."""
        hy3dgen = metadata.version("hy3dgen")
        dtype = str(self.dtype).removeprefix("torch.")
        return f"hunyuan3d-{RECIPE}+hy3dgen{hy3dgen}+{model_digest(self.files)[:16]}+{dtype}"

    def _load(self) -> Any:
        from serve_app.pipeline.generators.torchvision_compat import import_shapegen

        shapegen = import_shapegen()
        try:
            return shapegen.Hunyuan3DDiTFlowMatchingPipeline.from_single_file(
                str(self.files.weights),
                str(self.files.config),
                device=str(self.device),
                dtype=self.dtype,
                use_safetensors=self.files.weights.suffix == ".safetensors",
            )
        except (RuntimeError, KeyError, TypeError, ValueError, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelUnavailableError(
                f"hunyuan3d: cannot load {self.files.weights} with {self.files.config}: {first}",
                path=str(self.files.weights),
            ) from None
        finally:
            self._release()

    def generate(
        self,
        cutout: CutOut,
        params: GenerationParams,
        on_progress: ProgressCallback,
        cancel: CancelToken,
    ) -> Mesh:
        p = params.resolved_for(self.name)  # a no-op on resolved parameters
        try:
            return self._generate(cutout, p, on_progress, cancel)
        except BaseException as exc:  # a cancel, an OOM, anything: free the GPU first
            failure = detach_frames(exc)
        finally:
            self._release()  # after the except block: the failed run's tensors are gone
        if is_out_of_memory(failure):
            first = str(failure).splitlines()[0] if str(failure) else "CUDA out of memory"
            raise GpuOutOfMemoryError(
                f"the GPU ran out of memory generating the shape ({first}); retry later "
                "or with a lower quality or octree_resolution",
                retryable=True,
            ) from None
        raise failure

    def _generate(
        self,
        cutout: CutOut,
        p: GenerationParams,
        on_progress: ProgressCallback,
        cancel: CancelToken,
    ) -> Mesh:
        assert p.steps is not None and p.octree_resolution is not None
        assert p.num_chunks is not None and p.face_count is not None and p.seed is not None
        on_progress(S.SHAPE_GENERATION, 0.0)
        cancel.raise_if_cancelled()
        image = self._pipeline_image(cutout)
        steps = p.steps

        def after_step(step: int, timestep: Any, outputs: Any) -> None:
            on_progress(S.SHAPE_GENERATION, _lerp(DENOISE_BAND, (step + 1) / steps))
            cancel.raise_if_cancelled()

        queries = (p.octree_resolution + 1) ** 3
        total_chunks = max(1, math.ceil(queries / p.num_chunks))
        chunks = 0

        def before_chunk(module: Any, args: Any, kwargs: Any) -> None:
            nonlocal chunks
            cancel.raise_if_cancelled()
            on_progress(S.SHAPE_GENERATION, _lerp(DECODE_BAND, min(1.0, chunks / total_chunks)))
            chunks += 1

        # A CPU generator makes the same initial noise on every device (diffusers' randn_tensor).
        generator = torch.Generator(device="cpu").manual_seed(p.seed)
        hook = self.pipeline.vae.geo_decoder.register_forward_pre_hook(
            before_chunk, with_kwargs=True
        )
        try:
            meshes = self.pipeline(
                image=image,
                num_inference_steps=steps,
                guidance_scale=p.guidance_scale,
                generator=generator,
                box_v=BOX_V,
                octree_resolution=p.octree_resolution,
                mc_level=p.mc_level,
                num_chunks=p.num_chunks,
                output_type="trimesh",
                enable_pbar=False,
                callback=after_step,
                callback_steps=1,
            )
        except ValueError as exc:
            if "empty" in str(exc):  # hy3dgen's image processor: no opaque pixel
                raise NoSubjectError("the cut-out has no subject pixels") from None
            raise
        finally:
            hook.remove()
        mesh = meshes[0] if meshes else None
        if mesh is None or len(mesh.faces) == 0:
            raise NoSurfaceError(
                f"the shape model found no surface at mc_level {p.mc_level} "
                f"(octree_resolution {p.octree_resolution}); try another seed or mc_level",
                seed=p.seed,
                mc_level=p.mc_level,
            )
        cancel.raise_if_cancelled()
        on_progress(S.SHAPE_GENERATION, CLEAN_START)
        vertices, faces = clean_mesh(
            mesh.vertices, mesh.faces, p.face_count, self.settings.postprocess
        )
        if len(faces) == 0:
            raise NoSurfaceError("the shape model's surface vanished in clean-up")
        on_progress(S.SHAPE_GENERATION, 1.0)
        return Mesh(vertices=place_over_subject(vertices, cutout), faces=faces)

    def _pipeline_image(self, cutout: CutOut) -> Any:
        """What hy3dgen's pipeline is given as ``image``: the cut-out as an RGBA picture."""
        return Image.fromarray(np.ascontiguousarray(cutout.rgba), "RGBA")

    def _release(self) -> None:
        """Give back the memory of a run (or a load): host garbage, then CUDA's cache."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def detach_frames(exc: BaseException) -> BaseException:
    """``exc`` without its traceback (and those of its causes), so the frames of a failed
    run, which hold its GPU tensors, can be freed before it is raised again. Where the error
    is not one of ours, the stack it had is kept as text in a note (shown when it is logged).
    """
    import traceback

    if not isinstance(exc, OrfeasError) and not is_out_of_memory(exc):
        exc.add_note("raised at:\n" + "".join(traceback.format_tb(exc.__traceback__)).rstrip())
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return exc


def is_out_of_memory(exc: BaseException) -> bool:
    """The caching allocator's ``torch.cuda.OutOfMemoryError``, or an allocation made
    around it that failed the same way (cuBLAS, cuDNN: a RuntimeError saying so)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "CUDA out of memory" in text
        or "CUDA error: out of memory" in text
        or "CUBLAS_STATUS_ALLOC_FAILED" in text
    )


def _lerp(band: tuple[float, float], fraction: float) -> float:
    return band[0] + (band[1] - band[0]) * fraction


def place_over_subject(vertices: np.ndarray, cutout: CutOut) -> np.ndarray:
    """Scale and move hy3dgen's mesh over the subject, in image pixel units.

    hy3dgen's frame is +X right, +Y up, +Z towards the camera of the input view (as its
    texture baker's front camera assumes); its image processor centres the subject's bounding
    box, so the mesh's X/Y box is mapped onto the subject's, one scale for all three axes.
    vertices : (n, 3) float32 → (n, 3) float32; X = column, Y = −row, Z towards the camera
    """
    rows = np.flatnonzero(cutout.mask.any(axis=1))
    cols = np.flatnonzero(cutout.mask.any(axis=0))
    if rows.size == 0:
        raise NoSubjectError("the subject mask is empty")
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    extent = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-9))
    side = float(max(rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]))
    scale = side / extent
    centre = (lo + hi) / 2.0
    target = np.array(
        [(cols[0] + cols[-1] + 1) / 2.0, -(rows[0] + rows[-1] + 1) / 2.0, 0.0], dtype=np.float64
    )
    out = (vertices.astype(np.float64) - centre) * scale + target
    return out.astype(np.float32)
