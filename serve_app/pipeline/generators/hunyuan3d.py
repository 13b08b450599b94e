"""The ``hunyuan3d`` generator: Tencent's Hunyuan3D-2 shape model (hy3dgen) from a local directory.

Loading reads only ``model_path``: hy3dgen's ``config.yaml`` and the weights as published
(``model.fp16.safetensors``; ``model.safetensors`` or ``model.ckpt`` also accepted), through
``Hunyuan3DDiTFlowMatchingPipeline.from_single_file``. The hub is off in the process
(``HF_HUB_OFFLINE=1``) and the config is checked first: every class it names is hy3dgen's, and
the image encoder's architecture is inline (a hub model id there would be a download), so a
missing, incomplete or corrupt directory is an error naming the path, never a download.

An optional ``vae_path`` holds a separately published VAE (``config.yaml``, ``target``
``hy3dgen.shapegen.models.ShapeVAE``, and its weights, keys unprefixed), loaded in place of
the checkpoint's own. ``variant`` says what kind of checkpoint it is (standard, fast, turbo;
checked against the config: fast and turbo are guidance-distilled) and sets the defaults per
quality (:mod:`.hunyuan3d_profile`); ``decoder`` picks hy3dgen's dense or FlashVDM volume
decoder (:mod:`.hunyuan3d_decode`). The version names all of them.

A run has a device section and a CPU tail. The device section, one run at a time (a lock, so a
replica may take a second run whose CPU tail overlaps it): the cut-out (RGBA, straight alpha)
→ hy3dgen's image processor and conditioner → the flow-matching denoiser, one progress report
and one cancel check per step (the pipeline's ``callback``) → the VAE → volume decoding, one
report and check per call of the geometry decoder → the grid copied to the host, the device's
memory given back. The CPU tail: marching cubes → clean-up and face reduction
(:mod:`serve_app.pipeline.meshclean`) → the mesh placed over the subject in image pixel units,
so texturing projects the photo onto it.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from serve_app.contracts.params import GenerationParams, GeneratorName
from serve_app.errors import (
    GpuOutOfMemoryError,
    ModelUnavailableError,
    NoSubjectError,
    NoSurfaceError,
    OrfeasError,
)
from serve_app.pipeline.config import Hunyuan3DSettings
from serve_app.pipeline.generators.base import ShapeGenerator, ShapeProgress
from serve_app.pipeline.generators.hunyuan3d_decode import (
    ChunkWatch,
    Volume,
    decode_volume,
    expected_queries,
    extract_surface,
    set_decoder,
)
from serve_app.pipeline.generators.hunyuan3d_profile import DeviceKind, overrides, pick_decoder
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
RECIPE = 2
#: The VAE class a ``vae_path`` config may name.
VAE_TARGET = "hy3dgen.shapegen.models.ShapeVAE"

#: Progress within the shape stage: conditioning, denoising, decoding, extraction, clean-up.
DENOISE_BAND = (0.02, 0.60)
DECODE_BAND = (0.60, 0.88)
EXTRACT_START = 0.88
CLEAN_START = 0.94

DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelFiles:
    """The files of a model directory that loading uses."""

    config: Path
    weights: Path


def find_model_files(model_path: Path, what: str = "model") -> ModelFiles:
    """``config.yaml`` and the weight file in ``model_path`` (``what``: model or VAE); a
    clear error naming what is missing otherwise."""
    if not model_path.is_dir():
        raise ModelUnavailableError(
            f"hunyuan3d: {what} directory {model_path} does not exist (or is not a directory)",
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


def _load_yaml(path: Path, what: str) -> tuple[Any, Callable[[str], ModelUnavailableError]]:
    """The parsed YAML of ``path`` (``what``: config or VAE config), and the error that
    names the file as corrupt, with why; a file that is not YAML is that error at once."""

    def corrupt(why: str) -> ModelUnavailableError:
        return ModelUnavailableError(f"hunyuan3d: corrupt {what} {path}: {why}", path=str(path))

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")), corrupt
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise corrupt(f"not valid YAML ({str(exc).splitlines()[0]})") from None


def read_config(path: Path) -> dict[str, Any]:
    """hy3dgen's config, checked so that loading it instantiates only hy3dgen's classes and
    downloads nothing; a corrupt or unexpected file is an error naming it."""
    config, corrupt = _load_yaml(path, "config")
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


def read_vae_config(path: Path) -> dict[str, Any]:
    """A separately published VAE's config (``params``, and ``target`` if named: the only
    class it may name is hy3dgen's ShapeVAE), checked as :func:`read_config` checks the
    model's."""
    config, corrupt = _load_yaml(path, "VAE config")
    if not isinstance(config, dict) or not isinstance(config.get("params"), dict):
        raise corrupt("expected a mapping with 'params' (and 'target')")
    if config.get("target", VAE_TARGET) != VAE_TARGET:  # hy3dgen reads only the params
        raise corrupt(f"target {config.get('target')!r} is not {VAE_TARGET}")
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


class Hunyuan3DGenerator(ShapeGenerator):
    """Hunyuan3D-2's shape model behind the shape-generator interface.

    Loads once (at construction). ``generate`` may be called from two threads at once: the
    device section of a run (conditioning, denoising, decoding) takes a lock, so one model
    copy serves both and the device's memory holds one run's work; the CPU tail
    (extraction, clean-up) of one run overlaps the device section of the next.
    """

    name = GeneratorName.HUNYUAN3D.value

    def __init__(self, settings: Hunyuan3DSettings) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # nothing below may reach a model hub
        self.settings = settings
        self.files = find_model_files(settings.model_path)
        self.config = read_config(self.files.config)
        check_weights(self.files.weights)
        self.vae_files: ModelFiles | None = None
        if settings.vae_path is not None:
            self.vae_files = find_model_files(settings.vae_path, "VAE")
            read_vae_config(self.vae_files.config)
        self._check_variant()
        self.device = pick_device(settings.device)
        self.dtype = pick_dtype(settings.dtype, self.device)
        self.pipeline = self._load()
        if self.vae_files is not None:
            self.pipeline.vae = self._load_vae(self.vae_files)
        vae_width = int(self.pipeline.vae.geo_decoder.query_proj.out_features)
        device_kind: DeviceKind = "cuda" if self.device.type == "cuda" else "cpu"
        self.decoder = pick_decoder(settings.decoder, device_kind, vae_width)
        set_decoder(
            self.pipeline.vae, self.decoder, settings.topk_mode, settings.adaptive_kv_selection
        )
        #: The defaults this replica uses in place of the catalog's: its checkpoint's
        #: variant's, on its device (the ingress resolves with the same, from config).
        self.overrides: Mapping[str, int | float] = overrides(settings.variant, device_kind)
        self.version = self._version()
        self._device_lock = threading.Lock()
        logger.info(
            "hunyuan3d loaded from %s on %s (%s), decoder %s, version %s",
            self.files.weights,
            self.device,
            str(self.dtype).removeprefix("torch."),
            self.decoder,
            self.version,
        )

    def _check_variant(self) -> None:
        """A guidance-distilled checkpoint (fast, turbo) takes the guidance scale as an input
        (``guidance_embed``); the declared variant must say the same as the config."""
        distilled = bool(self.config["model"].get("params", {}).get("guidance_embed", False))
        variant = self.settings.variant
        if distilled != (variant in ("fast", "turbo")):
            kind = "guidance-distilled (fast or turbo)" if distilled else "standard"
            raise ModelUnavailableError(
                f"hunyuan3d: {self.files.config} describes a {kind} checkpoint "
                f"(model.params.guidance_embed: {str(distilled).lower()}) but variant is "
                f"{variant!r}",
                path=str(self.files.config),
            )

    def _version(self) -> str:
        """Changes with the checkpoint, the VAE, the decoder, the variant, hy3dgen, the dtype
        and this module's recipe: a mesh cached for one is never served for another."""
        hy3dgen = metadata.version("hy3dgen")
        dtype = str(self.dtype).removeprefix("torch.")
        vae = "own" if self.vae_files is None else model_digest(self.vae_files)[:16]
        decoder: str = self.decoder
        if decoder == "flashvdm":
            s = self.settings
            decoder += f"-{s.topk_mode}" if s.adaptive_kv_selection else "-allkeys"
        return (
            f"hunyuan3d-{RECIPE}+hy3dgen{hy3dgen}+{model_digest(self.files)[:16]}+vae-{vae}"
            f"+{decoder}+{self.settings.variant}+{dtype}"
        )

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
            raise _cannot_load(self.files, exc) from None
        finally:
            self._release()

    def _load_vae(self, files: ModelFiles) -> Any:
        """The VAE of ``vae_path``, in place of the checkpoint's; its latents must be the
        denoiser's (``embed_dim`` = the DiT's ``in_channels``)."""
        from serve_app.pipeline.generators.torchvision_compat import import_shapegen

        import_shapegen()
        from hy3dgen.shapegen.models import ShapeVAE

        try:
            vae = ShapeVAE.from_single_file(
                str(files.weights),
                str(files.config),
                device=str(self.device),
                dtype=self.dtype,
                use_safetensors=files.weights.suffix == ".safetensors",
            )
        except (RuntimeError, KeyError, TypeError, ValueError, OSError) as exc:
            raise _cannot_load(files, exc) from None
        finally:
            self._release()
        channels = self.config["model"].get("params", {}).get("in_channels")
        if channels is not None and vae.latent_shape[1] != channels:
            raise ModelUnavailableError(
                f"hunyuan3d: the VAE in {files.config.parent} makes latents of "
                f"{vae.latent_shape[1]} channels; the checkpoint's denoiser takes {channels}",
                path=str(files.config),
            )
        return vae.eval()

    def make(self, cutout: CutOut, p: GenerationParams, progress: ShapeProgress) -> Mesh:
        volume = self._device_section(self._pipeline_image(cutout), p, progress)
        return self._finish(volume, cutout, p, progress)

    def decode(
        self,
        cutout: CutOut,
        params: GenerationParams,
        on_progress: ProgressCallback,
        cancel: CancelToken,
    ) -> Volume:
        """The device section of a run on its own: the decoded occupancy field, on the host."""
        return self._device_section(
            self._pipeline_image(cutout), self.resolve(params), ShapeProgress(on_progress, cancel)
        )

    def _device_section(self, image: Any, p: GenerationParams, progress: ShapeProgress) -> Volume:
        """The device section of a run (one at a time): the decoded occupancy field, on the
        host. Whatever happens, the run's device memory is given back before the next."""
        with self._device_lock:
            try:
                return self._decode(image, p, progress)
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

    def _decode(self, image: Any, p: GenerationParams, progress: ShapeProgress) -> Volume:
        """Denoise and decode from ``image`` (what hy3dgen's pipeline takes: one picture, or
        pictures by view for the multi-view model)."""
        assert p.steps is not None and p.octree_resolution is not None
        assert p.num_chunks is not None and p.seed is not None and p.mc_level is not None
        progress(0.0)
        progress.check()
        steps = p.steps

        def after_step(step: int, timestep: Any, outputs: Any) -> None:
            progress(_lerp(DENOISE_BAND, (step + 1) / steps))
            progress.check()

        # A CPU generator makes the same initial noise on every device (diffusers' randn_tensor).
        generator = torch.Generator(device="cpu").manual_seed(p.seed)
        try:
            latents = self.pipeline(
                image=image,
                num_inference_steps=steps,
                guidance_scale=p.guidance_scale,
                generator=generator,
                output_type="latent",
                enable_pbar=False,
                callback=after_step,
                callback_steps=1,
            )
        except ValueError as exc:
            if "empty" in str(exc):  # hy3dgen's image processor: no opaque pixel
                raise NoSubjectError("the cut-out has no subject pixels") from None
            raise
        progress.check()
        vae = self.pipeline.vae
        with torch.inference_mode():
            latents = vae(latents / vae.scale_factor)  # as hy3dgen's _export
        progress(DECODE_BAND[0])
        s = self.settings
        watch = ChunkWatch(
            expected_queries(self.decoder, p.octree_resolution, s.adaptive_kv_selection),
            lambda fraction: progress(_lerp(DECODE_BAND, fraction)),
            progress.cancel,
            exact=self.decoder == "dense",
        )
        hook = vae.geo_decoder.register_forward_pre_hook(watch, with_kwargs=True)
        try:
            return decode_volume(vae, latents, BOX_V, p.octree_resolution, p.num_chunks, p.mc_level)
        finally:
            hook.remove()

    def _finish(
        self, volume: Volume, cutout: CutOut, p: GenerationParams, progress: ShapeProgress
    ) -> Mesh:
        """The CPU tail of a run: surface extraction, clean-up, placement."""
        assert p.mc_level is not None and p.face_count is not None
        progress.check()
        progress(EXTRACT_START)
        vertices, faces = extract_surface(volume, p.mc_level)
        if len(faces) == 0:
            raise NoSurfaceError(
                f"the shape model found no surface at mc_level {p.mc_level} "
                f"(octree_resolution {p.octree_resolution}); try another seed or mc_level",
                seed=p.seed,
                mc_level=p.mc_level,
            )
        progress.check()
        progress(CLEAN_START)
        vertices, faces = merge_vertices(vertices, faces)
        vertices, faces = clean_mesh(vertices, faces, p.face_count, self.settings.postprocess)
        if len(faces) == 0:
            raise NoSurfaceError("the shape model's surface vanished in clean-up")
        progress(1.0)
        return Mesh(vertices=place_over_subject(vertices, cutout), faces=faces)

    def _pipeline_image(self, cutout: CutOut) -> Any:
        """What hy3dgen's pipeline is given as ``image``: the cut-out as an RGBA picture."""
        return Image.fromarray(np.ascontiguousarray(cutout.rgba), "RGBA")

    def _release(self) -> None:
        """Give back the memory of a run (or a load): host garbage, then CUDA's cache."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _cannot_load(files: ModelFiles, exc: BaseException) -> ModelUnavailableError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ModelUnavailableError(
        f"hunyuan3d: cannot load {files.weights} with {files.config}: {first}",
        path=str(files.weights),
    )


def merge_vertices(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes' duplicate vertices merged (as hy3dgen's trimesh export does).

    vertices : (n, 3) float32, faces : (m, 3) int → (n', 3) float, (m', 3) int"""
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=True)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


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
