"""What travels between the registry and the workers for one run: uploads, tickets, results."""

from __future__ import annotations

from dataclasses import dataclass, field

from serve_app.contracts.params import GenerationParams, OutputFormat
from serve_app.contracts.text import TextToImageParams
from serve_app.contracts.views import ViewName


@dataclass(frozen=True)
class ViewUpload:
    """A stored photo of the subject from one more view (content-addressed like an upload)."""

    view: ViewName
    sha256: str
    size_bytes: int
    media_type: str


@dataclass(frozen=True)
class MeshUpload:
    """A stored mesh file to be textured (content-addressed like an upload)."""

    sha256: str
    size_bytes: int
    format: str


#: The generator name of a run that textures an uploaded mesh instead of making a shape,
#: and its "version" (part of its runs' cache keys; bumped when its texturing changes).
GIVEN_MESH = "given_mesh"
GIVEN_MESH_VERSION = "given-mesh-1"


@dataclass(frozen=True)
class UploadInfo:
    """A stored upload: its content hash and what was sniffed from its bytes.

    ``view`` is the view the photo shows (``front``, but for a mesh to texture photographed
    from other views only); ``views`` are the photos from other views uploaded with it, in
    ``VIEW_NAMES``' order; empty for a single photo or a picture made from a prompt.
    ``mesh`` is the mesh file to texture, for a job of ``POST /api/texture-mesh``.
    """

    sha256: str
    size_bytes: int
    media_type: str
    views: tuple[ViewUpload, ...] = ()
    view: ViewName = ViewName.FRONT
    mesh: MeshUpload | None = None

    def view_names(self) -> list[ViewName]:
        """Every view this upload carries, the photo's first."""
        return [self.view, *(v.view for v in self.views)]

    def view_files(self) -> dict[str, str]:
        """The content hash of each view's photo, by view name, the photo's first."""
        return {str(self.view): self.sha256, **{str(v.view): v.sha256 for v in self.views}}

    def hashes(self) -> list[str]:
        """The content hashes of every file of this upload: the photo's, its views', then
        the mesh's."""
        mesh = [self.mesh.sha256] if self.mesh else []
        return [*self.view_files().values(), *mesh]


@dataclass(frozen=True)
class RunRequest:
    """What one run of a job is asked to produce; ``params`` as resolved for ``generator``
    (every parameter it takes filled in), so equal requests have equal cache keys."""

    params: GenerationParams
    format: OutputFormat
    generator: str


@dataclass(frozen=True)
class JobTicket:
    """Everything a worker deployment needs for one run; small, no pixels.

    ``generator_version`` and ``artifact_key`` (the cache key of the run's canonical mesh)
    are set by the registry when it dispatches the run, the one place the key is computed;
    the ShapeTexture replica checks that its generator has that version and stores the
    mesh under that key.
    """

    job_id: str
    run: int
    upload: UploadInfo
    request: RunRequest
    generator_version: str | None = None
    artifact_key: str | None = None


@dataclass(frozen=True)
class ImageTicket:
    """What the TextToImage deployment needs for a text run's picture; small, no pixels.

    ``owner`` (the job's API key id, if any) is recorded beside the picture it stores.
    """

    job_id: str
    run: int
    params: TextToImageParams
    owner: str | None = None


@dataclass(frozen=True)
class StoredImage:
    """Where a text run's PNG was stored, and how it was made.

    ``upload`` is the image as the job's input (content-addressed under ``uploads/``, as
    if uploaded); ``key`` its text-to-image cache key; ``params`` the resolved parameters
    (the seed that was used, the size that was made); ``cached``: it was made before.
    """

    key: str
    upload: UploadInfo
    params: TextToImageParams
    model_version: str
    cached: bool
    seconds: float


@dataclass(frozen=True)
class TextModel:
    """What a TextToImage replica reports of its model: the version (part of every image
    cache key) and the native image side (the size of a request that gives none)."""

    version: str
    native_size: int


@dataclass(frozen=True)
class RunResult:
    """What a finished run reports: where the canonical mesh lives and how it was made."""

    artifact_key: str
    formats: tuple[str, ...]
    generator: str
    generator_version: str
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    #: Whether the mesh is closed (checked on the mesh itself); None: not known.
    watertight: bool | None = None
