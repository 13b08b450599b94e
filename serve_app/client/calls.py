"""The client's requests, built and read without I/O, so the sync and async clients share them.

A :class:`Call` says what to send, whether sending it twice is harmless (``idempotent``,
see ``serve_app.client.retry``) and how to read a success answer. Request bodies are the
API's own models, validated here before anything is sent: a bad argument is a
``pydantic.ValidationError`` (or ``ValueError``) at once, not a 422 later.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from serve_app.client.errors import UnexpectedResponse
from serve_app.contracts.jobs import is_job_id
from serve_app.contracts.meshtools import CustomMaterial, MeshAnalysis
from serve_app.contracts.params import OUTPUT_FORMATS
from serve_app.contracts.variants import is_variant_id
from serve_app.contracts.views import EXTRA_VIEWS, VIEW_NAMES, ViewName
from serve_app.schemas.jobs import (
    Callback,
    GenerateOptions,
    GenerateRequest,
    GeneratorsResponse,
    JobStatusResponse,
    TextureMeshParams,
    UploadResponse,
)
from serve_app.schemas.tools import (
    MAX_BATCH,
    AnalyzeJobRequest,
    BatchCreated,
    BatchJobsRequest,
    BatchStatus,
    MaterialRequest,
    MaterialsResponse,
    OptimizeRequest,
    PreviewRequest,
    TextToImageRequest,
    VariantMade,
)
from serve_app.schemas.webhooks import DeliveriesResponse

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: The first bytes of every PNG file.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A file to send: a path, or its bytes.
FileSource = str | os.PathLike[str] | bytes


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request: what to send and how to read the success answer."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    idempotent: bool
    json: Any = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    data: dict[str, str] | None = None
    params: dict[str, str] | None = None

    def send_args(self) -> dict[str, Any]:
        """The keyword arguments of ``httpx.Client.request`` for this call."""
        args: dict[str, Any] = {}
        for name in ("json", "files", "data", "params"):
            value = getattr(self, name)
            if value is not None:
                args[name] = value
        return args


def model_reader(cls: type[M]) -> Callable[[httpx.Response], M]:
    def read(response: httpx.Response) -> M:
        try:
            return cls.model_validate_json(response.content)
        except ValidationError as exc:
            raise UnexpectedResponse(
                f"{response.request.method} {response.request.url.path} answered "
                f"{response.status_code} with a body that is not a {cls.__name__}: "
                f"{exc.errors()[0]['msg']}"
            ) from None

    return read


def read_bytes(response: httpx.Response) -> bytes:
    return response.content


def job_path_id(job_id: str, what: str = "job") -> str:
    """``job_id`` (or a batch id: ``what``) checked before it goes into a URL path."""
    if not isinstance(job_id, str) or not is_job_id(job_id):
        raise ValueError(f"not a {what} id (32 lowercase hex characters): {job_id!r:.60}")
    return job_id


def file_part(source: FileSource, default_name: str) -> tuple[str, bytes]:
    """(file name, bytes) of a path or of bytes; the whole file is read so a retry can
    send it again."""
    if isinstance(source, bytes):
        return default_name, source
    path = Path(source)
    return path.name, path.read_bytes()


def generate_options(options: GenerateOptions | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with ``fields`` over it, validated; only what was set (the service fills
    in the rest, from the generator's defaults for ``quality``)."""
    merged = {**(options.model_dump(exclude_unset=True) if options else {}), **fields}
    return GenerateOptions.model_validate(merged).model_dump(mode="json", exclude_unset=True)


def callback(url: str | None) -> dict[str, str]:
    """``{"callback_url": url}`` checked by the API's own field, or nothing without a URL."""
    if url is None:
        return {}
    return _body(Callback(callback_url=url))


def _body(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_unset=True)


def _of_model(job_id: str, variant: str | None, **fields: Any) -> dict[str, Any]:
    """A mesh-tool body's fields: the job, its variant only when one is named."""
    return {"job_id": job_id, **({"variant": variant} if variant is not None else {}), **fields}


def upload(
    image: FileSource, filename: str | None = None, views: Mapping[str, FileSource] | None = None
) -> Call[UploadResponse]:
    name, data = file_part(image, "image")
    part = (filename or name, data, "application/octet-stream")
    parts = [("image", part), *view_parts(views or {}, EXTRA_VIEWS)]
    return Call("POST", "/api/upload-image", model_reader(UploadResponse), False, files=parts)


def view_parts(
    views: Mapping[str, FileSource], allowed: tuple[ViewName, ...]
) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The multipart parts of photos by view name (``ValueError`` for a name that is no
    view of ``allowed``)."""
    parts = []
    for view, source in views.items():
        if view not in allowed:
            raise ValueError(f"{view!r:.40} is not a view here; the views: {', '.join(allowed)}")
        name, data = file_part(source, str(view))
        parts.append((str(view), (name, data, "application/octet-stream")))
    return parts


def texture_mesh(
    mesh: FileSource,
    views: Mapping[str, FileSource],
    fields: Mapping[str, Any],
    callback_url: str | None = None,
) -> Call[JobStatusResponse]:
    """Texture a mesh file from photos by view name (``front`` ... ``bottom``)."""
    params = TextureMeshParams.model_validate({**fields, **callback(callback_url)})
    if not views:
        raise ValueError("texture_mesh takes 1 to 6 photos by view name, not none")
    name, data = file_part(mesh, "mesh")
    parts = [("mesh", (name, data, "application/octet-stream")), *view_parts(views, VIEW_NAMES)]
    form = {"params": params.model_dump_json(exclude_none=True)}
    read = model_reader(JobStatusResponse)  # 202: the new job's status
    return Call("POST", "/api/texture-mesh", read, False, files=parts, data=form)


def generate(
    job_id: str,
    options: GenerateOptions | None,
    fields: Mapping[str, Any],
    callback_url: str | None = None,
) -> Call[JobStatusResponse]:
    request = GenerateRequest.model_validate(
        {**generate_options(options, fields), "job_id": job_id, **callback(callback_url)}
    )
    return Call(
        "POST", "/api/generate-3d", model_reader(JobStatusResponse), False, json=_body(request)
    )


def text_to_image(
    prompt: str,
    generate_3d: GenerateOptions | Mapping[str, Any] | None,
    params: Mapping[str, Any],
    callback_url: str | None = None,
) -> Call[JobStatusResponse]:
    body: dict[str, Any] = {**params, "prompt": prompt, **callback(callback_url)}
    if generate_3d is not None:
        given = generate_3d if isinstance(generate_3d, GenerateOptions) else None
        body["generate_3d"] = generate_options(given, {} if given else dict(generate_3d))
    request = TextToImageRequest.model_validate(body)
    read = model_reader(JobStatusResponse)  # 202: the new job's status
    return Call("POST", "/api/text-to-image", read, False, json=_body(request))


def status(job_id: str) -> Call[JobStatusResponse]:
    path = f"/api/job-status/{job_path_id(job_id)}"
    return Call("GET", path, model_reader(JobStatusResponse), True)


def cancel(job_id: str) -> Call[JobStatusResponse]:
    # A second cancel changes nothing (409 once the job has ended): safe to repeat.
    path = f"/api/jobs/{job_path_id(job_id)}/cancel"
    return Call("POST", path, model_reader(JobStatusResponse), True)


def generators() -> Call[GeneratorsResponse]:
    return Call("GET", "/api/generators", model_reader(GeneratorsResponse), True)


def analyze(mesh: FileSource | None, job_id: str | None, variant: str | None) -> Call[MeshAnalysis]:
    read = model_reader(MeshAnalysis)
    if (mesh is None) == (job_id is None):
        raise ValueError("analyze takes a mesh file or a job_id, one of them")
    if mesh is not None:
        name, data = file_part(mesh, "mesh")
        part = (name, data, "application/octet-stream")
        return Call("POST", "/api/analyze-stl", read, True, files=[("file", part)])
    assert job_id is not None
    request = AnalyzeJobRequest.model_validate(_of_model(job_id, variant))
    return Call("POST", "/api/analyze-stl", read, True, json=_body(request))


def materials() -> Call[MaterialsResponse]:
    return Call("GET", "/api/materials", model_reader(MaterialsResponse), True)


def optimize(
    job_id: str, target_faces: int, variant: str | None, repair: bool
) -> Call[VariantMade]:
    fields = _of_model(job_id, variant, target_faces=target_faces, repair=repair)
    request = OptimizeRequest.model_validate(fields)
    # The variant is content-addressed (same job, operation, parameters: same variant).
    return Call("POST", "/api/optimize-mesh", model_reader(VariantMade), True, json=_body(request))


def apply_material(
    job_id: str, material: str | CustomMaterial | Mapping[str, Any], variant: str | None
) -> Call[VariantMade]:
    spec = material if isinstance(material, str | CustomMaterial) else dict(material)
    request = MaterialRequest.model_validate(_of_model(job_id, variant, material=spec))
    read = model_reader(VariantMade)
    return Call("POST", "/api/apply-material", read, True, json=_body(request))


def preview(job_id: str, variant: str | None, view: Mapping[str, Any]) -> Call[bytes]:
    request = PreviewRequest.model_validate(_of_model(job_id, variant, **view))
    return Call("POST", "/api/preview-3d", read_png, True, json=_body(request))


def read_png(response: httpx.Response) -> bytes:
    if not response.content.startswith(PNG_SIGNATURE):
        kind = response.headers.get("content-type", "no content type")
        raise UnexpectedResponse(
            f"{response.request.url.path} answered {response.status_code} with {kind}, not a PNG"
        )
    return response.content


def batch(
    images: Sequence[FileSource] | None,
    job_ids: Sequence[str] | None,
    options: GenerateOptions | None,
    fields: Mapping[str, Any],
    callback_url: str | None = None,
) -> Call[BatchCreated]:
    read = model_reader(BatchCreated)
    params = generate_options(options, fields)
    hook = callback(callback_url)
    if (images is None) == (job_ids is None):
        raise ValueError("batch takes images or job_ids, one of them")
    if job_ids is not None:
        body = {"job_ids": list(job_ids), "params": params, **hook}
        request = BatchJobsRequest.model_validate(body)
        return Call("POST", "/api/batch-generate", read, False, json=_body(request))
    assert images is not None
    if not 1 <= len(images) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} images, not {len(images)}")
    parts = []
    for index, image in enumerate(images):
        name, data = file_part(image, f"image-{index}")
        parts.append(("images", (name, data, "application/octet-stream")))
    form = {"params": json.dumps(params, separators=(",", ":")), **hook}  # a form field
    return Call("POST", "/api/batch-generate", read, False, files=parts, data=form)


def batch_status(batch_id: str) -> Call[BatchStatus]:
    path = f"/api/batches/{job_path_id(batch_id, 'batch')}"
    return Call("GET", path, model_reader(BatchStatus), True)


def deliveries(target_id: str, what: Literal["job", "batch"] = "job") -> Call[DeliveriesResponse]:
    """The webhook deliveries of a job's (or a batch's) ``callback_url``."""
    where = "batches" if what == "batch" else "jobs"
    path = f"/api/{where}/{job_path_id(target_id, what)}/deliveries"
    return Call("GET", path, model_reader(DeliveriesResponse), True)


def batch_events_path(batch_id: str) -> str:
    return f"/api/batches/{job_path_id(batch_id, 'batch')}/events"


def download_target(job_id: str, fmt: str, variant: str | None) -> tuple[str, dict[str, str]]:
    """(path, query) of a job's model in ``fmt``."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(OUTPUT_FORMATS)}, not {fmt!r:.20}")
    params: dict[str, str] = {}
    if variant is not None:
        if not is_variant_id(variant):
            raise ValueError(f"not a variant id (64 lowercase hex characters): {variant!r:.80}")
        params["variant"] = variant
    return f"/download/{job_path_id(job_id)}/{fmt}", params


def image_path(job_id: str) -> str:
    """The picture a text-to-image job made."""
    return f"/api/jobs/{job_path_id(job_id)}/image"


def thumbnail_path(job_id: str) -> str:
    return f"/api/jobs/{job_path_id(job_id)}/thumbnail"


def events_path(job_id: str) -> str:
    return f"/api/jobs/{job_path_id(job_id)}/events"
