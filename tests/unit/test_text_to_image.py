"""Text to image on a tiny random Stable Diffusion pipeline, loaded with the network off."""

from __future__ import annotations

import io
import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from serve_app.config import AppConfig
from serve_app.contracts.runs import ImageTicket
from serve_app.contracts.text import TextToImageParams
from serve_app.errors import JobCancelledError, ModelUnavailableError, ValidationFailedError
from serve_app.pipeline.types import CancelToken
from serve_app.storage import ArtifactStore
from tests.tiny_diffusion import NATIVE_SIZE, network_off

JOB = "0123456789abcdef0123456789abcdef"
OTHER_JOB = "fedcba9876543210fedcba9876543210"
PROMPT = "a red ceramic mug on a wooden table"


@pytest.fixture(scope="module")
def backend(tiny_sd_dir: Path) -> Any:
    from serve_app.pipeline.text_to_image import TextToImageBackend

    with network_off():
        return TextToImageBackend(tiny_sd_dir, "cpu", max_steps=20, default_steps=3)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize(("width", "height"), [(None, None), (128, 64), (64, 96)])
def test_width_and_height_decide_the_image_size(backend: Any, width: Any, height: Any) -> None:
    params = TextToImageParams(prompt=PROMPT, steps=2, seed=1, width=width, height=height)
    image, used = backend.generate(params)
    assert image.mode == "RGB"
    assert image.size == (width or NATIVE_SIZE, height or NATIVE_SIZE)
    assert (used.width, used.height) == image.size


def test_a_seed_gives_the_same_pixels_and_another_seed_others(backend: Any) -> None:
    first, _ = backend.generate(TextToImageParams(prompt=PROMPT, steps=3, seed=7))
    again, _ = backend.generate(TextToImageParams(prompt=PROMPT, steps=3, seed=7))
    other, _ = backend.generate(TextToImageParams(prompt=PROMPT, steps=3, seed=8))
    assert np.array_equal(pixels(first), pixels(again))
    assert np.abs(pixels(first) - pixels(other)).mean() > 1.0
    assert pixels(first).std() > 1.0  # an image, not a flat fill


def test_an_unset_seed_is_drawn_and_reported(backend: Any) -> None:
    image, used = backend.generate(TextToImageParams(prompt=PROMPT, steps=2))
    assert used.seed is not None and used.resolved
    again, _ = backend.generate(TextToImageParams(prompt=PROMPT, steps=2, seed=used.seed))
    assert np.array_equal(pixels(image), pixels(again))


def test_progress_is_reported_once_per_step_in_order(backend: Any) -> None:
    steps: list[tuple[int, int]] = []
    backend.generate(
        TextToImageParams(prompt=PROMPT, steps=5, seed=1),
        on_step=lambda done, total: steps.append((done, total)),
    )
    assert steps == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_defaults_come_from_the_deployment(backend: Any) -> None:
    steps: list[int] = []
    _, used = backend.generate(
        TextToImageParams(prompt=PROMPT, seed=1), on_step=lambda done, total: steps.append(done)
    )
    assert used.steps == 3 and steps == [1, 2, 3]
    assert used.guidance_scale == backend.default_guidance_scale


def test_cancel_stops_between_steps(backend: Any) -> None:
    cancel = CancelToken()
    steps: list[int] = []

    def on_step(done: int, total: int) -> None:
        steps.append(done)
        if done == 2:
            cancel.cancel()

    with pytest.raises(JobCancelledError):
        backend.generate(TextToImageParams(prompt=PROMPT, steps=6, seed=1), on_step, cancel)
    assert steps == [1, 2]


def test_a_cancelled_run_never_starts(backend: Any) -> None:
    cancel = CancelToken()
    cancel.cancel()
    steps: list[int] = []
    with pytest.raises(JobCancelledError):
        backend.generate(
            TextToImageParams(prompt=PROMPT, steps=3, seed=1),
            lambda done, total: steps.append(done),
            cancel,
        )
    assert steps == []


def test_concurrent_generations_take_turns(backend: Any) -> None:
    order: list[str] = []
    results: dict[str, np.ndarray] = {}

    def run(name: str) -> None:
        image, _ = backend.generate(
            TextToImageParams(prompt=PROMPT, steps=4, seed=3),
            on_step=lambda done, total: order.append(name),
        )
        results[name] = pixels(image)

    threads = [threading.Thread(target=run, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert order in (["a"] * 4 + ["b"] * 4, ["b"] * 4 + ["a"] * 4)
    assert np.array_equal(results["a"], results["b"])


def test_limits_of_the_deployment_are_422_naming_the_field(backend: Any) -> None:
    with pytest.raises(ValidationFailedError, match="^steps: must be at most 20"):
        backend.generate(TextToImageParams(prompt=PROMPT, steps=21))


def test_prompts_are_logged_as_a_hash_and_a_length(
    backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "a portrait of my neighbour Jane Doe at 12 Elm Street"
    with caplog.at_level(logging.DEBUG):
        backend.generate(
            TextToImageParams(prompt=secret, negative_prompt="Elm Street", steps=1, seed=1)
        )
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "sha256:" in logged and f"({len(secret)} chars)" in logged
    assert "Jane" not in logged and "Elm" not in logged


def test_version_is_the_model_digest_and_dtype(backend: Any, tiny_sd_dir: Path) -> None:
    from serve_app.pipeline.text_to_image import check_model_dir, model_digest

    digest = model_digest(check_model_dir(tiny_sd_dir))
    assert backend.version == f"{digest[:16]}-float32"
    assert backend.pipeline_class == "StableDiffusionPipeline"


def test_a_changed_weight_file_changes_the_digest(tiny_sd_dir: Path, tmp_path: Path) -> None:
    from serve_app.pipeline.text_to_image import check_model_dir, model_digest

    copy = Path(shutil.copytree(tiny_sd_dir, tmp_path / "copy"))
    before = model_digest(check_model_dir(copy))
    (copy / ".cache").mkdir()
    (copy / ".cache" / "x").write_text("not part of the model")
    assert model_digest(check_model_dir(copy)) == before
    weights = next((copy / "vae").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_digest(check_model_dir(copy)) != before


# -- a missing or incomplete model directory ----------------------------------------------


def _broken(tiny_sd_dir: Path, tmp_path: Path, case: str) -> Path:
    copy = Path(shutil.copytree(tiny_sd_dir, tmp_path / "model"))
    if case == "no-index":
        (copy / "model_index.json").unlink()
    elif case == "bad-index":
        (copy / "model_index.json").write_text("{not json")
    elif case == "no-unet":
        shutil.rmtree(copy / "unet")
    elif case == "no-vae-weights":
        for weights in (copy / "vae").glob("*.safetensors"):
            weights.unlink()
    elif case == "no-scheduler-config":
        (copy / "scheduler" / "scheduler_config.json").unlink()
    elif case == "no-tokenizer":
        shutil.rmtree(copy / "tokenizer")
    return copy


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("no-index", "model_index.json is missing"),
        ("bad-index", "model_index.json is not a diffusers pipeline index"),
        ("no-unet", "the sub-folder unet/ is missing"),
        ("no-vae-weights", "vae/ has no weights"),
        ("no-scheduler-config", "scheduler/ has no config file"),
        ("no-tokenizer", "the sub-folder tokenizer/ is missing"),
    ],
)
def test_an_incomplete_model_directory_is_named_with_what_it_lacks(
    tiny_sd_dir: Path, tmp_path: Path, case: str, named: str
) -> None:
    from serve_app.pipeline.text_to_image import TextToImageBackend

    path = _broken(tiny_sd_dir, tmp_path, case)
    with pytest.raises(ModelUnavailableError) as caught:
        TextToImageBackend(path, "cpu")
    error = caught.value
    assert str(path) in error.message and named in error.message
    assert error.status_code == 503
    assert error.details["setting"] == "text_to_image.model_path"


def test_a_missing_model_directory_is_named(tmp_path: Path) -> None:
    from serve_app.pipeline.text_to_image import TextToImageBackend

    with pytest.raises(ModelUnavailableError, match="does not exist") as caught:
        TextToImageBackend(tmp_path / "nowhere", "cpu")
    assert str(tmp_path / "nowhere") in caught.value.message


def test_unreadable_weights_are_a_load_error_naming_the_path(
    tiny_sd_dir: Path, tmp_path: Path
) -> None:
    from serve_app.pipeline.text_to_image import TextToImageBackend

    path = Path(shutil.copytree(tiny_sd_dir, tmp_path / "model"))
    next((path / "unet").glob("*.safetensors")).write_bytes(b"not safetensors")
    with network_off(), pytest.raises(ModelUnavailableError, match="could not load") as caught:
        TextToImageBackend(path, "cpu")
    assert str(path) in caught.value.message


# -- the store and the deployment ---------------------------------------------------------


@pytest.fixture(scope="module")
def two_steps(tiny_sd_dir: Path) -> Any:
    """The backend as a deployment configured with two default steps loads it."""
    from serve_app.work.text_to_image import backend_from_config

    config = AppConfig.model_validate(
        {"text_to_image": {"model_path": str(tiny_sd_dir), "device": "cpu", "default_steps": 2}}
    )
    with network_off():
        return backend_from_config(config.text_to_image)


def test_make_image_stores_the_png_as_the_jobs_input_and_caches_it(
    two_steps: Any, tmp_path: Path
) -> None:
    from serve_app.work.text_to_image import make_image

    store = ArtifactStore(tmp_path / "data")
    params = TextToImageParams(prompt=PROMPT, seed=11, width=96, height=64)
    first = make_image(two_steps, store, ImageTicket(JOB, 1, params, owner="key-a"))
    assert not first.cached and first.model_version == two_steps.version
    assert first.params.seed == 11 and first.params.steps == 2
    assert store.job_upload(JOB) == first.upload and store.job_owner(JOB) == "key-a"
    assert first.upload.media_type == "image/png"
    png = store.read_upload(first.upload.sha256)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (96, 64)

    steps: list[int] = []
    second = make_image(
        two_steps, store, ImageTicket(OTHER_JOB, 1, params), lambda d, t: steps.append(d)
    )
    assert second.cached and second.key == first.key and second.upload == first.upload
    assert steps == []  # from the cache: no denoising step
    assert store.job_upload(OTHER_JOB) == first.upload and store.job_owner(OTHER_JOB) is None

    other = make_image(
        two_steps, store, ImageTicket(OTHER_JOB, 2, params.model_copy(update={"seed": 12}))
    )
    assert not other.cached and other.key != first.key


def test_an_expired_cached_image_is_made_again(two_steps: Any, tmp_path: Path) -> None:
    from serve_app.work.text_to_image import make_image

    store = ArtifactStore(tmp_path / "data")
    params = TextToImageParams(prompt=PROMPT, seed=5)
    first = make_image(two_steps, store, ImageTicket(JOB, 1, params))
    index = store.root / "images" / first.key[:2] / f"{first.key}.json"
    assert json.loads(index.read_text())["sha256"] == first.upload.sha256
    for upload in (store.root / "uploads").rglob(first.upload.sha256):
        upload.unlink()  # what retention does to an unreferenced upload
    assert store.generated_image(first.key) is None
    again = make_image(two_steps, store, ImageTicket(OTHER_JOB, 1, params))
    assert not again.cached and again.upload == first.upload  # the same pixels, made again


def test_the_deployment_without_a_model_path_says_which_setting(tmp_path: Path) -> None:
    from deployments.text_to_image import TextToImage
    from serve_app.errors import ModelNotConfiguredError

    config = AppConfig.model_validate({"storage": {"root": str(tmp_path)}})
    with pytest.raises(ModelNotConfiguredError, match=r"text_to_image\.model_path"):
        TextToImage(config)


# -- on a GPU -------------------------------------------------------------------------------


@pytest.mark.gpu
def test_the_tiny_pipeline_runs_on_cuda_in_float16(tiny_sd_dir: Path) -> None:
    from serve_app.pipeline.text_to_image import TextToImageBackend

    with network_off():
        gpu = TextToImageBackend(tiny_sd_dir)  # auto: CUDA, float16
    assert (gpu.device, gpu.dtype) == ("cuda", "float16")
    assert gpu.version.endswith("-float16")
    steps: list[int] = []
    params = TextToImageParams(prompt=PROMPT, steps=4, seed=21, width=128, height=64)
    image, _ = gpu.generate(params, on_step=lambda done, total: steps.append(done))
    again, _ = gpu.generate(params)
    assert image.size == (128, 64) and steps == [1, 2, 3, 4]
    assert np.array_equal(pixels(image), pixels(again))
    assert pixels(image).std() > 1.0
