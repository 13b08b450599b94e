"""Data types of the pipeline stages: progress, cancel, cut-outs and meshes."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Self

from serve_app.contracts.stages import Stage
from serve_app.errors import JobCancelledError

if TYPE_CHECKING:
    # numpy is imported where a mesh is (de)serialised, so the generator catalog (and the
    # HTTP schemas, the client and the CLI that read it) import none.
    import numpy as np

ProgressCallback = Callable[[Stage, float], None]
"""``on_progress(stage, fraction)`` with ``fraction`` in [0, 1]."""


def no_progress(stage: Stage, fraction: float) -> None:
    """A progress callback that ignores every report."""


class CancelToken:
    """A thread-safe cancel flag checked by the stages between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelledError("the job was cancelled")


@dataclass
class CutOut:
    """A subject cut out of its background.

    rgba : (h, w, 4) uint8, straight (not premultiplied) alpha
    mask : (h, w) bool, the subject's pixels
    """

    rgba: np.ndarray
    mask: np.ndarray
    source: Literal["alpha", "model"] = "model"


def front_and_views(views: CutOut | Mapping[str, CutOut]) -> tuple[CutOut, dict[str, CutOut]]:
    """The front cut-out and every cut-out by view name (``front`` among them) of a subject
    given as one cut-out (the front) or cut-outs by view name."""
    if isinstance(views, CutOut):
        return views, {"front": views}
    if "front" not in views:
        raise ValueError(f"the views {sorted(views)} have no front")
    return views["front"], dict(views)


@dataclass
class Mesh:
    """An untextured triangle mesh in the generator's own units.

    vertices : (n, 3) float32
    faces    : (m, 3) int64, counter-clockwise seen from outside
    """

    vertices: np.ndarray
    faces: np.ndarray


@dataclass
class TexturedMesh:
    """The canonical result of one generation, from which every format is exported.

    vertices   : (n, 3) float32, millimetres; +Y up, +Z towards the camera
    faces      : (m, 3) int64, counter-clockwise seen from outside
    uv         : (n, 2) float32, OpenGL convention (v = 0 at the image's bottom)
    texture    : (h, w, 3) uint8 base-colour image (sRGB)
    roughness, metallic : glTF's PBR factors, 0..1
    base_color : (r, g, b) sRGB 0..255 when a plain colour replaces the texture (then
                 ``texture`` is that colour, 1 × 1), None while the texture is the colour
    material   : the name of the material applied (a preset or "custom"), None for the
                 generator's own
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    texture: np.ndarray
    roughness: float = 0.8
    metallic: float = 0.0
    meta: dict[str, float | int | str | bool] = field(default_factory=dict)
    base_color: tuple[int, int, int] | None = None
    material: str | None = None

    def to_bytes(self) -> bytes:
        """Serialise to an ``.npz`` (the canonical artifact), uncompressed: zlib over the
        texture costs more time per job than the disk it saves is worth. ``base_color`` and
        ``material`` are written only when set, so files without them read as before."""
        import numpy as np

        arrays: dict[str, np.ndarray] = {
            "vertices": self.vertices.astype(np.float32),
            "faces": self.faces.astype(np.int64),
            "uv": self.uv.astype(np.float32),
            "texture": self.texture.astype(np.uint8),
            "pbr": np.array([self.roughness, self.metallic], dtype=np.float32),
        }
        if self.base_color is not None:
            arrays["base_color"] = np.array(self.base_color, dtype=np.uint8)
        if self.material is not None:
            arrays["material"] = np.array(self.material, dtype=np.str_)
        buf = io.BytesIO()
        arrays["meta"] = np.array(json.dumps(self.meta, sort_keys=True))
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        import numpy as np

        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            roughness, metallic = (float(x) for x in z["pbr"])
            base_color = None
            if "base_color" in z.files:
                r, g, b = (int(x) for x in z["base_color"])
                base_color = (r, g, b)
            return cls(
                vertices=z["vertices"],
                faces=z["faces"],
                uv=z["uv"],
                texture=z["texture"],
                roughness=roughness,
                metallic=metallic,
                meta=read_meta(z),
                base_color=base_color,
                material=str(z["material"]) if "material" in z.files else None,
            )


def read_meta(archive: Any) -> dict[str, float | int | str | bool]:
    """The ``meta`` of a canonical mesh's open ``.npz`` (empty for meshes stored before it)."""
    if "meta" not in archive.files:
        return {}
    meta = json.loads(str(archive["meta"]))
    return meta if isinstance(meta, dict) else {}
