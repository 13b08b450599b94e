"""Text jobs through the API and a real registry in this process (no Ray): the picture's
cache, the picture as the job's input, text to 3D in one job, progress and cancel.

Where a test needs pictures made, a ``LocalTextWorker`` stands where the TextToImage
deployment would: the tiny random Stable Diffusion pipeline (``make_image``), with a
heartbeat to the registry per denoising step as the deployment sends.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from ray.serve._private.common import DeploymentID
from ray.serve.exceptions import DeploymentUnavailableError

from serve_app.api.security import hash_key
from serve_app.config import AppConfig
from serve_app.contracts.params import GenerationParams
from serve_app.contracts.runs import ImageTicket, StoredImage, TextModel
from serve_app.contracts.stages import RunPlan, Stage
from serve_app.contracts.text import TextToImageParams
from serve_app.errors import WorkerLostError
from serve_app.pipeline.text_params import image_cache_key, prompt_sha256, with_defaults, with_size
from serve_app.pipeline.types import CancelToken
from serve_app.registry.actor import JobRegistry, journal_path
from serve_app.registry.cache import cache_key
from serve_app.registry.journal import JobJournal
from serve_app.registry.table import JobTable
from serve_app.storage import ArtifactStore, sha256_hex
from tests.support import encode, photo
from tests.tiny_diffusion import NATIVE_SIZE, network_off
from tests.unit.inprocess import (
    GENERATOR_VERSION,
    InProcessService,
    app_config,
    attach,
    in_process_service,
    tetrahedron,
)

URL = "/api/text-to-image"
PROMPT = "a red ceramic mug, my secret prompt"
MODEL = TextModel(version="tiny-sd-test", native_size=NATIVE_SIZE)
OWNER, OTHER = "owner-key", "other-key"
TEXT_CONFIG = {"model_path": "/nonexistent/model", "default_steps": 3, "max_steps": 40}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[InProcessService]:
    security = {"api_key_hashes": [hash_key(OWNER), hash_key(OTHER)]}
    config = app_config(tmp_path, text_to_image=TEXT_CONFIG, security=security)
    with in_process_service(config) as service:
        yield service


def wait_until_ended(service: InProcessService, job_id: str) -> dict[str, Any]:
    service.wait_view(lambda: bool((job := service.view.peek(job_id)) and job.status.terminal))
    response = service.http.get(f"/api/job-status/{job_id}", headers=bearer(OWNER))
    assert response.status_code == 200, response.text
    return dict(response.json())


def cache_picture(service: InProcessService, png: bytes, **request: Any) -> str:
    """Store ``png`` as the picture a request with these fields makes; the registry is told
    the model's version, as a TextToImage replica tells it. Returns the image key."""
    section = service.config.text_to_image
    params = with_defaults(TextToImageParams(**request), section.default_steps, 7.0)
    key = image_cache_key(with_size(params, MODEL.native_size), MODEL.version)
    ArtifactStore(service.config.storage.root).put_generated_image("f" * 32, key, png)

    async def report() -> None:
        await service.registry.report_text_model(MODEL)

    service.run(report)
    return key


def test_a_cached_picture_completes_the_job_without_any_deployment(
    service: InProcessService,
) -> None:
    png = encode(photo("coffee")[:96, :96])
    cache_picture(service, png, prompt=PROMPT, seed=7)
    answer = service.http.post(URL, json={"prompt": PROMPT, "seed": 7}, headers=bearer(OWNER))
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["status"] == "queued" and accepted["source"] == "prompt"
    assert accepted["stages"] == ["text_to_image"] and accepted["image_url"] is None
    job_id = accepted["job_id"]

    done = wait_until_ended(service, job_id)
    assert done["status"] == "completed" and done["cached"] and done["progress"] == 100.0
    assert done["outputs"] == {} and done["download_url"] is None and done["format"] is None
    text = done["text_to_image"]
    assert text["prompt_sha256"] == prompt_sha256(PROMPT) and text["prompt_chars"] == len(PROMPT)
    assert text["made"] and text["cached"] and text["model_version"] == MODEL.version
    assert (text["seed"], text["steps"], text["width"], text["height"]) == (7, 3, 64, 64)
    picture = service.http.get(done["image_url"], headers=bearer(OWNER))
    assert picture.status_code == 200 and picture.content == png
    assert picture.headers["content-type"] == "image/png"
    log = service.http.get(f"/api/jobs/{job_id}/logs", headers=bearer(OWNER)).text
    for body in (answer.text, log, str(done)):
        assert "secret" not in body  # the prompt is a hash and a length, everywhere
    assert "completed from the cache" in log and "picture made from the cache" in log

    # The picture is the job's input: generate-3d works as after an upload.
    service.complete_from_cache(job_id, quality=2)
    model = service.http.post(
        "/api/generate-3d", json={"job_id": job_id, "quality": 2}, headers=bearer(OWNER)
    )
    assert model.status_code == 202, model.text
    assert model.json()["stages"] == [str(s) for s in RunPlan.MODEL.stages]
    modelled = wait_until_ended(service, job_id)
    assert modelled["status"] == "completed" and modelled["run"] == 2, modelled
    assert modelled["outputs"] and modelled["text_to_image"]["made"]
    assert service.http.get(f"/download/{job_id}/stl", headers=bearer(OWNER)).status_code == 200


def test_text_to_3d_in_one_request_completes_from_both_caches(
    service: InProcessService,
) -> None:
    png = encode(photo("chelsea")[:120, :160])
    cache_picture(service, png, prompt=PROMPT, seed=9)
    # The model of that picture is cached too, under the key its run will look up.
    mesh_key = cache_key(
        sha256_hex(png),
        GenerationParams(quality=2),
        service.config.pipeline.background_model,
        "inflate",
        GENERATOR_VERSION,
        texture=service.config.pipeline.texture_version,
    )
    ArtifactStore(service.config.storage.root).put_mesh(mesh_key, tetrahedron().to_bytes())

    async def report() -> None:
        await service.registry.report_generator("inflate", GENERATOR_VERSION)

    service.run(report)
    body = {"prompt": PROMPT, "seed": 9, "generate_3d": {"format": "stl", "quality": 2}}
    answer = service.http.post(URL, json=body, headers=bearer(OWNER))
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    assert answer.json()["stages"] == [str(s) for s in RunPlan.TEXT_TO_MODEL.stages]
    assert answer.json()["format"] == "stl" and answer.json()["quality"] == 2
    done = wait_until_ended(service, job_id)
    assert done["status"] == "completed" and done["cached"], done
    assert done["download_url"] == f"/download/{job_id}/stl" and done["run"] == 1
    assert done["text_to_image"]["cached"] and done["stage"] == "export"
    assert service.http.get(done["download_url"], headers=bearer(OWNER)).status_code == 200


def test_a_job_s_picture_is_409_until_made_and_404_for_another_key(
    service: InProcessService,
) -> None:
    # No TextToImage deployment and no cached picture: the run fails, the job has none.
    answer = service.http.post(URL, json={"prompt": PROMPT}, headers=bearer(OWNER))
    job_id = answer.json()["job_id"]
    failed = wait_until_ended(service, job_id)
    assert failed["status"] == "failed" and failed["error"]["code"] == "model_unavailable"
    assert failed["text_to_image"]["made"] is False and failed["image_url"] is None
    picture = service.http.get(f"/api/jobs/{job_id}/image", headers=bearer(OWNER))
    assert picture.status_code == 409
    assert picture.json()["error"]["code"] == "job_conflict"
    assert "before its picture was made" in picture.json()["error"]["message"]
    model = service.http.post("/api/generate-3d", json={"job_id": job_id}, headers=bearer(OWNER))
    assert model.status_code == 409 and "no picture to model" in model.text

    for path in (f"/api/jobs/{job_id}/image", f"/api/job-status/{job_id}"):
        refused = service.http.get(path, headers=bearer(OTHER))
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "job_not_found"
    listed = service.http.get("/api/jobs", headers=bearer(OTHER)).json()
    assert job_id not in {job["job_id"] for job in listed["jobs"]}

    # An uploaded job's picture is its photo.
    uploaded = service.upload(bearer(OWNER))
    photo_answer = service.http.get(f"/api/jobs/{uploaded}/image", headers=bearer(OWNER))
    assert photo_answer.status_code == 200 and photo_answer.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(photo_answer.content)) as image:
        assert image.size == (160, 120)


# -- pictures made by the tiny pipeline, in place of the deployment ---------------------------


class LocalTextWorker:
    """What the TextToImage deployment does for a ticket, in this process: the picture made
    by the tiny pipeline, one heartbeat to the registry per denoising step (the decode
    counts as one more), a cancel heard at the next beat. ``step_s`` slows each step."""

    def __init__(
        self, backend: Any, config: AppConfig, registry: JobRegistry, step_s: float = 0.0
    ) -> None:
        self.backend = backend
        self.store = ArtifactStore(config.storage.root)
        self.registry = registry
        self.step_s = step_s
        self.steps: list[int] = []
        self.calls = 0
        #: Calls to fail as a lost replica would (the registry sees WorkerLostError).
        self.lose = 0
        #: Calls Serve refuses, as while the deployment is deleted or redeployed.
        self.unavailable = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock = threading.Lock()

    def generate(self, ticket: ImageTicket) -> StoredImage:
        from serve_app.work.text_to_image import make_image

        with self.lock:
            self.calls += 1
            lost, self.lose = self.lose > 0, max(0, self.lose - 1)
            if self.unavailable > 0:
                self.unavailable -= 1
                raise DeploymentUnavailableError(DeploymentID("TextToImage", "orfeas"))
        cancel = CancelToken()

        def beat(fraction: float) -> None:
            assert self.loop is not None
            heartbeat = self.registry.heartbeat(
                ticket.job_id, ticket.run, Stage.TEXT_TO_IMAGE, fraction
            )
            if asyncio.run_coroutine_threadsafe(heartbeat, self.loop).result(timeout=10).stop:
                cancel.cancel()

        def on_step(done: int, total: int) -> None:
            self.steps.append(done)
            time.sleep(self.step_s)
            beat(done / (total + 1))

        beat(0.0)
        cancel.raise_if_cancelled()
        if lost:
            raise WorkerLostError("a worker was lost while handling the request", retryable=True)
        image = make_image(self.backend, self.store, ticket, on_step, cancel)
        beat(1.0)
        return image


@pytest.fixture(scope="module")
def tiny_backend(tiny_sd_dir: Path) -> Any:
    from serve_app.pipeline.text_to_image import TextToImageBackend

    with network_off():
        return TextToImageBackend(tiny_sd_dir, "cpu", default_steps=3, max_steps=40)


def local_worker(service: InProcessService, backend: Any, step_s: float = 0.0) -> LocalTextWorker:
    worker = LocalTextWorker(backend, service.config, service.registry, step_s)

    async def setup() -> None:
        worker.loop = asyncio.get_running_loop()
        await service.registry.report_text_model(backend.model)

    service.run(setup)
    attach(service, text=worker)
    return worker


def test_a_picture_is_made_step_by_step_then_the_same_request_comes_from_the_cache(
    service: InProcessService, tiny_backend: Any
) -> None:
    worker = local_worker(service, tiny_backend, step_s=0.05)
    body = {"prompt": PROMPT, "steps": 6, "width": 96, "height": 64}
    job_id = service.http.post(URL, json=body, headers=bearer(OWNER)).json()["job_id"]
    progress: list[float] = []

    def record_progress() -> bool:
        job = service.view.peek(job_id)
        if job is not None and job.stage is Stage.TEXT_TO_IMAGE and job.status.active:
            progress.append(job.progress)
        return bool(job and job.status.terminal)

    service.wait_view(record_progress, timeout_s=60)
    done = wait_until_ended(service, job_id)
    assert done["status"] == "completed" and not done["cached"], done
    assert worker.steps == [1, 2, 3, 4, 5, 6] and worker.calls == 1
    assert len(set(progress)) >= 2 and progress == sorted(progress) and max(progress) < 100
    seed = done["text_to_image"]["seed"]
    assert isinstance(seed, int)
    assert (done["text_to_image"]["width"], done["text_to_image"]["height"]) == (96, 64)
    picture = service.http.get(f"/api/jobs/{job_id}/image", headers=bearer(OWNER))
    with Image.open(io.BytesIO(picture.content)) as image:
        assert image.format == "PNG" and image.size == (96, 64)

    # The same prompt, parameters (the seed it drew) and model: from the cache, no call.
    again = {**body, "seed": seed}
    second = service.http.post(URL, json=again, headers=bearer(OWNER)).json()["job_id"]
    cached = wait_until_ended(service, second)
    assert cached["status"] == "completed" and cached["cached"], cached
    assert worker.calls == 1
    same = service.http.get(f"/api/jobs/{second}/image", headers=bearer(OWNER))
    assert same.content == picture.content


def test_cancel_stops_the_picture_between_steps(
    service: InProcessService, tiny_backend: Any
) -> None:
    worker = local_worker(service, tiny_backend, step_s=0.2)
    body = {"prompt": PROMPT, "steps": 30, "generate_3d": {"quality": 1}}
    job_id = service.http.post(URL, json=body, headers=bearer(OWNER)).json()["job_id"]
    service.wait_view(lambda: bool((job := service.view.peek(job_id)) and job.progress > 0))
    answer = service.http.post(f"/api/jobs/{job_id}/cancel", headers=bearer(OWNER))
    assert answer.status_code == 200, answer.text
    done = wait_until_ended(service, job_id)
    assert done["status"] == "cancelled", done
    assert done["error"]["code"] == "cancelled" and done["error"]["stage"] == "text_to_image"
    assert 1 <= len(worker.steps) < 30  # stopped between steps, long before the last
    assert service.http.get(f"/api/jobs/{job_id}/image", headers=bearer(OWNER)).status_code == 409
    assert done["progress"] < 30.0  # within the picture's band of a text-to-model run


def test_a_text_run_whose_replica_was_lost_is_retried_with_the_same_seed(
    service: InProcessService, tiny_backend: Any
) -> None:
    worker = local_worker(service, tiny_backend)
    worker.lose = 1
    body = {"prompt": PROMPT, "steps": 2}
    job_id = service.http.post(URL, json=body, headers=bearer(OWNER)).json()["job_id"]
    done = wait_until_ended(service, job_id)
    assert done["status"] == "completed" and done["run"] == 2, done
    assert worker.calls == 2 and done["text_to_image"]["made"]
    log = service.http.get(f"/api/jobs/{job_id}/logs", headers=bearer(OWNER)).json()["entries"]
    assert any(e["event"] == "retried" for e in log)
    # The seed was drawn when the job was accepted: asked again, it is the same picture.
    again = {**body, "seed": done["text_to_image"]["seed"]}
    second = service.http.post(URL, json=again, headers=bearer(OWNER)).json()["job_id"]
    assert wait_until_ended(service, second)["cached"] and worker.calls == 2


def test_a_run_no_worker_can_take_waits_for_one_without_spending_its_retries(
    tmp_path: Path, tiny_backend: Any
) -> None:
    # While its deployment is deleted or redeployed, Serve refuses a call at once; the run
    # waits retry_after_s and goes again, as for a full queue, and no retry is spent.
    registry = {"retry_after_s": 1, "max_retries": 0, "queue_timeout_s": 60.0}
    config = app_config(tmp_path, text_to_image=TEXT_CONFIG, registry=registry)
    with in_process_service(config) as service:
        worker = local_worker(service, tiny_backend)
        worker.unavailable = 2
        body = {"prompt": PROMPT, "steps": 2}
        job_id = service.http.post(URL, json=body).json()["job_id"]
        done = wait_until_ended_anyone(service, job_id)
        assert done["status"] == "completed" and done["run"] == 3, done
        assert worker.calls == 3 and worker.unavailable == 0
        log = service.http.get(f"/api/jobs/{job_id}/logs").json()["entries"]
        assert [e["event"] for e in log].count("unavailable") == 2, log

        # A lost worker still spends a retry: with none allowed, the run fails.
        worker.lose = 1
        second = service.http.post(URL, json={**body, "seed": 9}).json()["job_id"]
        failed = wait_until_ended_anyone(service, second)
        assert failed["status"] == "failed" and failed["run"] == 1, failed
        assert failed["error"]["code"] == "model_unavailable" and failed["error"]["retryable"]


def wait_until_ended_anyone(service: InProcessService, job_id: str) -> dict[str, Any]:
    service.wait_view(lambda: bool((job := service.view.peek(job_id)) and job.status.terminal), 30)
    response = service.http.get(f"/api/job-status/{job_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_restarted_registry_resumes_a_text_job_from_its_journal(
    tmp_path: Path, tiny_backend: Any
) -> None:
    config = app_config(tmp_path, text_to_image=TEXT_CONFIG)
    job_id = "0123456789abcdef0123456789abcdef"
    table = JobTable()
    table.add_text(job_id, TextToImageParams(prompt=PROMPT, seed=4, steps=2))
    record = table.start_run(job_id, None, plan=RunPlan.IMAGE)
    table.report_progress(job_id, 1, Stage.TEXT_TO_IMAGE, 0.5)  # running when it went
    journal = JobJournal(journal_path(config))
    journal.save(record)
    journal.close()
    with in_process_service(config) as service:
        worker = local_worker(service, tiny_backend)  # the workers are back
        done = wait_until_ended(service, job_id)
        assert done["status"] == "completed" and done["run"] == 2, done
        assert worker.calls == 1 and done["text_to_image"]["seed"] == 4
        log = service.http.get(f"/api/jobs/{job_id}/logs").json()["entries"]
        assert any(e["event"] == "resumed" for e in log)
