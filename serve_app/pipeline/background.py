"""Background removal: an RGBA cut-out and a subject mask from a photo."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image
from scipy import ndimage

from serve_app.contracts.stages import Stage
from serve_app.errors import ModelUnavailableError, NoSubjectError
from serve_app.pipeline.types import CancelToken, CutOut, ProgressCallback, no_progress

U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"

#: A subject must cover at least this share of the image (after dropping specks).
MIN_SUBJECT_FRACTION = 0.015
#: A "subject" covering more than this share leaves no background to tell it from.
MAX_SUBJECT_FRACTION = 0.97
#: Components smaller than this share of the largest one are dropped as specks.
SPECK_FRACTION = 0.05


class BackgroundRemover(Protocol):
    """Turns a photo into a cut-out of its subject."""

    name: str

    def remove(
        self,
        image: Image.Image,
        on_progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> CutOut: ...


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _local_u2netp_session(model_path: Path) -> Any:
    """A rembg U²-Net-p session that loads ``model_path`` and never downloads."""
    import onnxruntime as ort
    from rembg.sessions.u2netp import U2netpSession

    class LocalU2netpSession(U2netpSession):
        @classmethod
        def download_models(cls, *args: Any, **kwargs: Any) -> str:
            return str(model_path)

    options = ort.SessionOptions()
    # Idle intra-op threads sleep instead of spinning: in a service the cores they would
    # spin on belong to the shape replica and the API.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return LocalU2netpSession("u2netp", options, providers=["CPUExecutionProvider"])


class RembgRemover:
    """rembg with the U²-Net-p ONNX model from a local models directory.

    An input whose alpha channel already separates a subject keeps that alpha
    and skips the model. The ONNX session is shared by threads under a lock.
    """

    name = "rembg-u2netp"

    def __init__(self, models_dir: Path, model: str = "u2netp") -> None:
        model_path = Path(models_dir) / f"{model}.onnx"  # pipeline.background_model
        if not model_path.is_file():
            raise ModelUnavailableError(
                f"background model not found at {model_path}; run `make setup` to install it",
                setting="pipeline.models_dir",
            )
        if md5_of(model_path) != U2NETP_MD5:
            raise ModelUnavailableError(
                f"{model_path} is not the expected U²-Net-p model (md5 mismatch)",
                setting="pipeline.models_dir",
            )
        self._session = _local_u2netp_session(model_path)
        self._lock = threading.Lock()

    def remove(
        self,
        image: Image.Image,
        on_progress: ProgressCallback = no_progress,
        cancel: CancelToken | None = None,
    ) -> CutOut:
        on_progress(Stage.BACKGROUND_REMOVAL, 0.0)
        rgb = np.asarray(image.convert("RGB"))
        alpha = _meaningful_alpha(image)
        source: Literal["alpha", "model"] = "alpha"
        if alpha is None:
            if cancel:
                cancel.raise_if_cancelled()
            with self._lock:
                (predicted,) = self._session.predict(image.convert("RGB"))
            alpha = np.asarray(predicted, dtype=np.uint8)
            source = "model"
        on_progress(Stage.BACKGROUND_REMOVAL, 0.8)
        mask = clean_mask(alpha > 127)
        covered = float(mask.mean())
        if covered < MIN_SUBJECT_FRACTION or covered > MAX_SUBJECT_FRACTION:
            raise NoSubjectError(
                "no subject found in the image: use a photo with one clear object in front of "
                "a plain background, or a PNG with a transparent background",
                subject_fraction=round(covered, 4),
            )
        alpha = np.where(mask, np.maximum(alpha, 128), np.minimum(alpha, 127)).astype(np.uint8)
        on_progress(Stage.BACKGROUND_REMOVAL, 1.0)
        return CutOut(rgba=np.dstack([rgb, alpha]), mask=mask, source=source)


def remove_views(
    remover: BackgroundRemover,
    images: Mapping[str, Image.Image],
    on_progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> dict[str, CutOut]:
    """The cut-outs of one subject's photos by view name, as one batch: the stage's
    progress runs once across them all, and a photo in which no subject is found is named
    in the error. A photo whose alpha already cuts out its subject is kept as it is."""
    cutouts: dict[str, CutOut] = {}
    count = len(images)
    for i, (view, image) in enumerate(images.items()):

        def report(stage: Stage, fraction: float, i: int = i) -> None:
            on_progress(stage, (i + fraction) / count)

        try:
            cutouts[view] = remover.remove(image, report, cancel)
        except NoSubjectError as exc:
            if count > 1:
                exc.message = f"view {view}: {exc.message}"
                exc.details["view"] = view
            raise
    return cutouts


def _meaningful_alpha(image: Image.Image) -> np.ndarray | None:
    """The image's alpha channel if it separates a subject from transparency, else None."""
    if image.mode != "RGBA":
        return None
    alpha = np.asarray(image.getchannel("A"))
    transparent = float((alpha < 16).mean())
    opaque = float((alpha > 240).mean())
    if transparent < 0.01 or opaque < 0.01:
        return None
    return alpha


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Drop specks and fill small holes in a subject mask.

    mask : (h, w) bool → (h, w) bool
    """
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    keep = np.flatnonzero(sizes >= SPECK_FRACTION * sizes.max()) + 1
    cleaned = np.isin(labels, keep)
    holes = ndimage.binary_fill_holes(cleaned) & ~cleaned
    hole_labels, hole_count = ndimage.label(holes)
    if hole_count:
        hole_sizes = ndimage.sum_labels(holes, hole_labels, index=np.arange(1, hole_count + 1))
        small = np.flatnonzero(hole_sizes < 0.002 * mask.size) + 1
        cleaned |= np.isin(hole_labels, small)
    return cleaned
