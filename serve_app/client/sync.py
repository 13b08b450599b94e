"""``OrfeasClient``: the service's API from Python, blocking (``AsyncOrfeasClient`` is its twin)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

import serve_app.client.calls as calls
from serve_app.client.base import ClientSettings, default_name, transport_error
from serve_app.client.calls import Call, FileSource
from serve_app.client.errors import ApiError, TransportError, error_from_response
from serve_app.client.events import JobEnded, JobEvent
from serve_app.client.files import AtomicFile, check_complete, target_path
from serve_app.client.retry import Attempts, RetryPolicy
from serve_app.client.watch import (
    BatchWatchPlan,
    FollowPlan,
    NoEventStream,
    WatchMode,
    WatchPlan,
    WatchSettings,
)
from serve_app.contracts.meshtools import CustomMaterial, MeshAnalysis
from serve_app.schemas.jobs import (
    GenerateOptions,
    GeneratorsResponse,
    JobStatusResponse,
    UploadResponse,
)
from serve_app.schemas.tools import BatchCreated, BatchStatus, MaterialsResponse, VariantMade
from serve_app.schemas.webhooks import DeliveriesResponse

T = TypeVar("T")
E = TypeVar("E")
PathLike = str | os.PathLike[str]


class OrfeasClient:
    """A client of one ORFEAS service at ``base_url`` (with its route prefix, if any).

    ``api_key`` goes in ``Authorization: Bearer`` on every request. 429 and 503 answers are
    retried within ``retry`` (see ``serve_app.client.retry``); every other error answer
    raises an ``ApiError`` subclass with the service's code and message. Use it as a
    context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy | None = None,
        watch: WatchSettings | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = ClientSettings.make(base_url, api_key, timeout, retry, watch)
        self._http = httpx.Client(
            base_url=self.settings.base_url,
            headers=self.settings.headers,
            timeout=self.settings.timeout,
            transport=transport,
        )

    def __enter__(self) -> OrfeasClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- jobs ---------------------------------------------------------------------------

    def upload(
        self,
        image: FileSource,
        filename: str | None = None,
        *,
        views: Mapping[str, FileSource] | None = None,
    ) -> UploadResponse:
        """Store a photo (a path, or its bytes) under a new job id (status ``uploaded``),
        with ``views``: photos of the same subject from other views by name (``left``,
        ``back``, ``right``, ``top``, ``bottom``)."""
        return self._send(calls.upload(image, filename, views))

    def generate(
        self,
        job_id: str,
        options: GenerateOptions | None = None,
        *,
        callback_url: str | None = None,
        **fields: Any,
    ) -> JobStatusResponse:
        """Start a run of an uploaded job (202): ``format``, ``quality``, ``generator``, ...
        as in ``GenerateOptions``, given as ``options`` and/or keywords; its final status
        is POSTed to ``callback_url`` when the run ends (see :meth:`deliveries`)."""
        return self._send(calls.generate(job_id, options, fields, callback_url))

    def submit(
        self,
        image: FileSource,
        options: GenerateOptions | None = None,
        *,
        views: Mapping[str, FileSource] | None = None,
        callback_url: str | None = None,
        **fields: Any,
    ) -> JobStatusResponse:
        """Upload a photo (with ``views``, as ``upload``) and start its run (with
        ``callback_url``, as ``generate``)."""
        job_id = self.upload(image, views=views).job_id
        return self.generate(job_id, options, callback_url=callback_url, **fields)

    def texture_mesh(
        self,
        mesh: FileSource,
        views: Mapping[str, FileSource],
        *,
        callback_url: str | None = None,
        **fields: Any,
    ) -> JobStatusResponse:
        """Texture a mesh file (STL, OBJ, PLY, GLB) from 1 to 6 photos by view name
        (``front`` ... ``bottom``); ``format`` and ``quality`` as keywords. A new job (202)."""
        return self._send(calls.texture_mesh(mesh, views, fields, callback_url))

    def text_to_image(
        self,
        prompt: str,
        *,
        generate_3d: GenerateOptions | Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        **params: Any,
    ) -> JobStatusResponse:
        """A picture from ``prompt`` (``seed``, ``steps``, ``width``, ... as in
        ``TextToImageRequest``); with ``generate_3d``, on to a model under the same job."""
        return self._send(calls.text_to_image(prompt, generate_3d, params, callback_url))

    def status(self, job_id: str) -> JobStatusResponse:
        return self._send(calls.status(job_id))

    def cancel(self, job_id: str) -> JobStatusResponse:
        """Cancel a queued or running job; answers once it has stopped (409 if it is not
        active)."""
        return self._send(calls.cancel(job_id))

    def generators(self) -> GeneratorsResponse:
        return self._send(calls.generators())

    def deliveries(self, job_id: str) -> DeliveriesResponse:
        """The webhook deliveries of the job's ``callback_url``, oldest first, each with
        its attempts."""
        return self._send(calls.deliveries(job_id))

    def watch(self, job_id: str, mode: WatchMode = "auto") -> Iterator[JobEvent]:
        """The job's events up to and including one ``JobEnded`` (see
        ``serve_app.client.watch``)."""
        yield from self._follow(WatchPlan(job_id, mode, self.settings.watch))

    def wait(self, job_id: str, mode: WatchMode = "auto") -> JobStatusResponse:
        """Until the job's run ends; its final state."""
        for event in self.watch(job_id, mode):
            if isinstance(event, JobEnded):
                return event.job
        raise AssertionError("a watch ends with its JobEnded event")  # pragma: no cover

    # -- files --------------------------------------------------------------------------

    def download(
        self,
        job_id: str,
        format: str = "glb",
        path: PathLike | None = None,
        *,
        variant: str | None = None,
    ) -> Path:
        """The job's model (or one of its variants) as ``format``, written atomically to
        ``path`` (a file, or a directory for the served name); returns where it went."""
        url, params = calls.download_target(job_id, format, variant)
        return self._fetch(url, params, path, default_name(job_id, format))

    def download_image(self, job_id: str, path: PathLike | None = None) -> Path:
        """The picture a text-to-image job made (PNG)."""
        return self._fetch(calls.image_path(job_id), {}, path, f"{job_id}.png")

    def thumbnail(self, job_id: str, path: PathLike | None = None) -> Path:
        """A completed job's thumbnail (PNG)."""
        return self._fetch(calls.thumbnail_path(job_id), {}, path, f"{job_id}_thumbnail.png")

    # -- mesh tools and batches ---------------------------------------------------------

    def analyze(
        self,
        mesh: FileSource | None = None,
        *,
        job_id: str | None = None,
        variant: str | None = None,
    ) -> MeshAnalysis:
        """Size, volume, topology and printability of a mesh file, or of a job's model."""
        return self._send(calls.analyze(mesh, job_id, variant))

    def materials(self) -> MaterialsResponse:
        return self._send(calls.materials())

    def optimize(
        self, job_id: str, target_faces: int, *, variant: str | None = None, repair: bool = True
    ) -> VariantMade:
        """A variant of the job's model with at most ``target_faces`` faces."""
        return self._send(calls.optimize(job_id, target_faces, variant, repair))

    def apply_material(
        self,
        job_id: str,
        material: str | CustomMaterial | Mapping[str, Any],
        *,
        variant: str | None = None,
    ) -> VariantMade:
        """A variant with a preset's finish (by name) or custom PBR factors."""
        return self._send(calls.apply_material(job_id, material, variant))

    def preview(
        self,
        job_id: str,
        path: PathLike | None = None,
        *,
        variant: str | None = None,
        **view: Any,
    ) -> bytes:
        """A PNG of the model (``width``, ``height``, ``azimuth_deg``, ``elevation_deg``,
        ``background``); also written atomically to ``path`` if given."""
        png = self._send(calls.preview(job_id, variant, view))
        if path is not None:
            with AtomicFile(Path(path)) as out:
                out.write(png)
        return png

    def batch(
        self,
        images: Sequence[FileSource] | None = None,
        *,
        job_ids: Sequence[str] | None = None,
        options: GenerateOptions | None = None,
        callback_url: str | None = None,
        **fields: Any,
    ) -> BatchCreated:
        """Up to 16 photos (or uploaded jobs) run with the same parameters, as one batch;
        its final status is POSTed to ``callback_url`` when its last job ends."""
        return self._send(calls.batch(images, job_ids, options, fields, callback_url))

    def batch_status(self, batch_id: str) -> BatchStatus:
        return self._send(calls.batch_status(batch_id))

    def batch_deliveries(self, batch_id: str) -> DeliveriesResponse:
        """The webhook deliveries of the batch's ``callback_url`` (as :meth:`deliveries`)."""
        return self._send(calls.deliveries(batch_id, "batch"))

    def watch_batch(self, batch_id: str, mode: WatchMode = "auto") -> Iterator[BatchStatus]:
        """Each new state of the batch, from its event stream (or polls), up to and
        including the first whose ``status`` is no longer ``running``."""
        yield from self._follow(BatchWatchPlan(batch_id, mode, self.settings.watch))

    # -- transport ----------------------------------------------------------------------

    def _follow(self, plan: FollowPlan[Any, E]) -> Iterator[E]:
        """What ``plan`` gives, from the stream (resumed after a drop) or from polls."""
        while not plan.done:
            if not plan.streaming:
                try:
                    event = plan.polled(self._send(plan.poll()))
                except TransportError as error:
                    time.sleep(plan.poll_failed(error))
                    continue
                if event is not None:
                    yield event
                if not plan.done:
                    time.sleep(plan.settings.poll_s)
                continue
            wait = 0.0
            try:
                with self._stream(
                    plan.path, plan.params, plan.headers(), plan.timeout(self.settings.timeout)
                ) as response:
                    opened = plan.opened(response)
                    if opened == "final":
                        event = plan.polled(self._send(plan.poll()))
                        if event is not None:
                            yield event
                        continue
                    if opened == "read":
                        for line in response.iter_lines():
                            event = plan.line(line)
                            if event is not None:
                                yield event
                            if plan.done:
                                return
                        wait = plan.lost("the stream ended early")
            except ApiError as error:
                plan.refused(error)
            except NoEventStream:
                raise
            except (TransportError, httpx.TransportError) as error:
                wait = plan.lost(type(error).__name__)
            if wait:
                time.sleep(wait)

    def _send(self, call: Call[T]) -> T:
        attempts = Attempts(self.settings.retry, call.idempotent)
        while True:
            try:
                response = self._http.request(call.method, call.path, **call.send_args())
            except httpx.TransportError as exc:
                raise transport_error(exc, call.method, call.path) from exc
            if response.is_success:
                return call.read(response)
            error = error_from_response(response)
            time.sleep(attempts.next_wait(error))

    @contextmanager
    def _stream(
        self,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Iterator[httpx.Response]:
        """An open GET answer with a success status (retried like any GET)."""
        attempts = Attempts(self.settings.retry, idempotent=True)
        while True:
            request = self._http.build_request(
                "GET",
                path,
                params=params,
                headers=headers,
                timeout=timeout or httpx.USE_CLIENT_DEFAULT,
            )
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise transport_error(exc, "GET", path) from exc
            try:
                if response.is_success:
                    yield response
                    return
                response.read()
                error = error_from_response(response)
            finally:
                response.close()
            time.sleep(attempts.next_wait(error))

    def _fetch(
        self, url: str, params: Mapping[str, str], path: PathLike | None, default: str
    ) -> Path:
        with self._stream(url, params) as response:
            target = target_path(path, response, default)
            try:
                with AtomicFile(target) as out:
                    for chunk in response.iter_bytes(1 << 16):
                        out.write(chunk)
                    check_complete(response, out.written)
            except httpx.TransportError as exc:
                raise transport_error(exc, "GET", url) from exc
        return target
