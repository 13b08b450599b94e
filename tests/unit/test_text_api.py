"""``POST /api/text-to-image`` on the real FastAPI app (no Ray): prompts are untrusted text."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from serve_app.api.app import create_api
from serve_app.api.deps import Services
from serve_app.config import AppConfig
from serve_app.contracts.text import TextToImageParams
from serve_app.pipeline.text_params import describe_prompt, image_cache_key
from serve_app.schemas.jobs import Callback, GenerateOptions, GenerateRequest
from serve_app.schemas.tools import TextToImageRequest
from serve_app.storage import ArtifactStore
from tests.unit.inprocess import app_config, in_process_service

URL = "/api/text-to-image"
MARKER = "<script>alert(1)</script>"


class NoRegistry:
    """This route answers without the registry: any call to it fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the text-to-image route called registry.{name}")


def client(tmp_path: Path, **text_to_image: Any) -> TestClient:
    config = AppConfig.model_validate(
        {"storage": {"root": str(tmp_path)}, "text_to_image": text_to_image}
    )
    services = Services(
        config=config, store=ArtifactStore(tmp_path), registry=NoRegistry(), jobs=NoRegistry()
    )
    return TestClient(create_api(services))


@pytest.fixture
def api(tmp_path: Path) -> TestClient:
    return client(tmp_path)


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[TestClient]:
    """The API over an in-process registry, with a text-to-image model configured (no
    deployment serves it here, so accepted jobs fail once dispatched)."""
    text = {"model_path": str(tmp_path / "model"), "max_steps": 40, "max_pixels": 65536}
    with in_process_service(app_config(tmp_path, text_to_image=text)) as service:
        yield service.http


HOSTILE: list[tuple[str, Any, str]] = [
    ("missing", {}, "prompt"),
    ("empty", {"prompt": ""}, "prompt"),
    ("whitespace", {"prompt": " \n\t "}, "prompt"),
    ("10,000 characters", {"prompt": "x" * 10_000}, "prompt"),
    ("1,001 characters", {"prompt": "x" * 1001}, "prompt"),
    ("NUL", {"prompt": f"a mug{MARKER}\x00"}, "prompt"),
    ("escape sequence", {"prompt": f"\x1b[2J{MARKER}"}, "prompt"),
    ("C1 control", {"prompt": f"{MARKER}\x85"}, "prompt"),
    ("bidi override", {"prompt": f"\u202e{MARKER}"}, "prompt"),
    ("lone surrogate", '{"prompt": "<script>alert(1)</script>\\ud800"}', "prompt"),
    ("a number", {"prompt": 3}, "prompt"),
    ("a list", {"prompt": [MARKER]}, "prompt"),
    ("an object", {"prompt": {"text": MARKER}}, "prompt"),
    ("null", {"prompt": None}, "prompt"),
    ("bad negative", {"prompt": "a mug", "negative_prompt": f"{MARKER}\x07"}, "negative_prompt"),
    ("long negative", {"prompt": "a mug", "negative_prompt": "y" * 1001}, "negative_prompt"),
    ("seed below 0", {"prompt": "a mug", "seed": -1}, "seed"),
    ("seed over 32 bits", {"prompt": "a mug", "seed": 2**32}, "seed"),
    ("seed as text", {"prompt": "a mug", "seed": MARKER}, "seed"),
    ("no steps", {"prompt": "a mug", "steps": 0}, "steps"),
    ("too many steps", {"prompt": "a mug", "steps": 151}, "steps"),
    ("NaN guidance", '{"prompt": "a mug", "guidance_scale": NaN}', "guidance_scale"),
    ("huge guidance", {"prompt": "a mug", "guidance_scale": 1e9}, "guidance_scale"),
    ("width not a multiple of 8", {"prompt": "a mug", "width": 100}, "width"),
    ("height too small", {"prompt": "a mug", "height": 32}, "height"),
    ("height too large", {"prompt": "a mug", "height": 4096}, "height"),
    ("too many pixels", {"prompt": "a mug", "width": 2048, "height": 2048}, "width × height"),
    ("unknown field", {"prompt": "a mug", "sampler": "x"}, "sampler"),
    ("job id in generate_3d", {"prompt": "a mug", "generate_3d": {"job_id": "0" * 32}}, "job_id"),
    ("bad format", {"prompt": "a mug", "generate_3d": {"format": "fbx"}}, "format"),
    ("bad quality", {"prompt": "a mug", "generate_3d": {"quality": 11}}, "quality"),
    ("bad generator", {"prompt": "a mug", "generate_3d": {"generator": "../x"}}, "generator"),
]


@pytest.mark.parametrize(("body", "field"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_bodies_are_422_naming_the_field_never_echoing_it(
    api: TestClient, body: Any, field: str
) -> None:
    if isinstance(body, str):
        response = api.post(URL, content=body, headers={"content-type": "application/json"})
    else:
        response = api.post(URL, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["message"]
    assert "<script" not in response.text and "\\u001b" not in response.text
    assert "xxxxxxxxxx" not in response.text and "yyyyyyyyyy" not in response.text


@pytest.mark.parametrize(
    "prompt",
    [
        "a red ceramic mug",
        "a mug,\non two lines\twith a tab",
        "x" * 1000,
        "一只红色的陶瓷杯 ☕ with emoji 👩‍🔬",
    ],
)
def test_valid_prompts_without_a_model_are_503_naming_the_setting(
    api: TestClient, prompt: str
) -> None:
    body = {
        "prompt": prompt,
        "negative_prompt": "",
        "seed": 2**32 - 1,
        "steps": 150,
        "guidance_scale": 0,
        "width": 1024,
        "height": 2048,
        "generate_3d": {"format": "stl", "quality": 3, "dimensions": {"width": 80}},
    }
    response = api.post(URL, json=body)
    assert response.status_code == 503
    assert response.headers["retry-after"]
    error = response.json()["error"]
    assert error["code"] == "model_not_configured"
    assert "text-to-image is not configured" in error["message"]
    assert error["setting"] == "text_to_image.model_path"
    assert error["feature"] == "text_to_image"


def test_the_deployments_limits_are_422_naming_the_field(configured: TestClient) -> None:
    steps = configured.post(URL, json={"prompt": "a mug", "steps": 41})
    assert steps.status_code == 422
    assert steps.json()["error"]["message"] == "steps: must be at most 40 on this service"
    assert steps.json()["error"]["fields"][0]["loc"] == ["body", "steps"]
    size = configured.post(URL, json={"prompt": "a mug", "width": 512, "height": 256})
    assert size.status_code == 422
    assert "at most 65536 pixels" in size.json()["error"]["message"]
    within = configured.post(URL, json={"prompt": "a mug", "steps": 40, "width": 256})
    assert within.status_code == 202, within.text


def test_the_route_logs_a_prompt_only_as_a_hash(
    configured: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    prompt = "my neighbour Jane Doe at 12 Elm Street"
    with caplog.at_level(logging.DEBUG):
        configured.post(URL, json={"prompt": prompt})
        configured.post(URL, json={"prompt": prompt + "\x07"})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert describe_prompt(prompt) in logged
    assert "Jane" not in logged and "Elm" not in logged


def test_describe_prompt_is_a_hash_and_a_length() -> None:
    text = "a ceramic owl"
    assert describe_prompt(text) == describe_prompt(text)
    assert describe_prompt(text) != describe_prompt(text + " ")
    assert describe_prompt(text).endswith(f"({len(text)} chars)")
    assert "owl" not in describe_prompt(text)
    assert describe_prompt(None) == "none"


def test_generate_3d_options_mirror_generate_3d_without_job_id() -> None:
    mirrored = set(GenerateRequest.model_fields) - {"job_id", *Callback.model_fields}
    assert mirrored <= set(GenerateOptions.model_fields)
    for name in mirrored:
        ours, theirs = GenerateOptions.model_fields[name], GenerateRequest.model_fields[name]
        assert ours.annotation == theirs.annotation and ours.metadata == theirs.metadata, name
    options = GenerateOptions.model_validate({"format": "obj", "quality": 7})
    assert options.params() == GenerateRequest(job_id="0" * 32, quality=7).params()


def test_the_request_gives_the_image_parameters_alone() -> None:
    request = TextToImageRequest.model_validate(
        {"prompt": "a mug", "negative_prompt": "  ", "seed": 4, "generate_3d": {}}
    )
    assert request.params() == TextToImageParams(prompt="a mug", seed=4)
    assert request.generate_3d == GenerateOptions()


# -- the image cache key ------------------------------------------------------------------

BASE = TextToImageParams(
    prompt="a mug", seed=1, steps=20, guidance_scale=7.5, width=512, height=512
)


def test_the_cache_key_is_a_pure_function_of_prompt_parameters_and_model() -> None:
    key = image_cache_key(BASE, "abc-float16")
    assert key == image_cache_key(BASE.model_copy(), "abc-float16")
    assert len(key) == 64 and int(key, 16) >= 0
    same_negative = BASE.model_copy(update={"negative_prompt": None})
    assert image_cache_key(same_negative, "abc-float16") == key
    changes: list[dict[str, Any]] = [
        {"prompt": "a mug "},
        {"negative_prompt": "blurry"},
        {"seed": 2},
        {"steps": 21},
        {"guidance_scale": 7.0},
        {"width": 520},
        {"height": 520},
    ]
    keys = {image_cache_key(BASE.model_copy(update=change), "abc-float16") for change in changes}
    keys |= {image_cache_key(BASE, "abc-float32"), image_cache_key(BASE, "abd-float16")}
    assert key not in keys and len(keys) == len(changes) + 2


def test_a_blank_negative_prompt_is_none() -> None:
    assert TextToImageParams(prompt="a", negative_prompt=" ").negative_prompt is None
    assert TextToImageParams(prompt="a", negative_prompt="").negative_prompt is None


def test_the_cache_key_needs_resolved_parameters() -> None:
    with pytest.raises(ValueError, match="resolved"):
        image_cache_key(TextToImageParams(prompt="a mug", seed=1), "abc")


# -- the config section -------------------------------------------------------------------


def test_the_text_to_image_section_is_strict(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="model_pth"):
        AppConfig.model_validate({"text_to_image": {"model_pth": "x"}})
    with pytest.raises(ValidationError, match="float16 needs device cuda"):
        AppConfig.model_validate({"text_to_image": {"device": "cpu", "dtype": "float16"}})
    with pytest.raises(ValidationError, match="default_steps"):
        AppConfig.model_validate({"text_to_image": {"default_steps": 60, "max_steps": 50}})
    with pytest.raises(ValidationError, match="max_pixels"):
        AppConfig.model_validate({"text_to_image": {"max_pixels": 8 * 1024 * 1024}})
    config = AppConfig.model_validate({"text_to_image": {"model_path": "models/sd"}})
    resolved = config.resolved(tmp_path).text_to_image
    assert resolved.model_path == tmp_path / "models" / "sd"
    assert AppConfig().text_to_image.model_path is None
    options = config.text_to_image.deployment.serve_options("TextToImage")
    assert options["autoscaling_config"]["max_replicas"] >= 1
    assert options["max_ongoing_requests"] == 1


def test_the_openapi_examples_are_valid_requests_and_statuses(api: TestClient) -> None:
    from serve_app.api.routers.text import ACCEPTED_EXAMPLE
    from serve_app.schemas.jobs import JobStatusResponse

    spec = api.get("/openapi.json").json()
    operation = spec["paths"][URL]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"picture", "text_to_3d"}
    for example in examples.values():
        TextToImageRequest.model_validate(example["value"])
    accepted = operation["responses"]["202"]["content"]["application/json"]["example"]
    assert accepted["job_id"] == ACCEPTED_EXAMPLE["job_id"]
    times = {"created_at": 0, "updated_at": 0, "started_at": None, "finished_at": None}
    JobStatusResponse.model_validate({**ACCEPTED_EXAMPLE, **times})
    image = spec["paths"]["/api/jobs/{job_id}/image"]["get"]["responses"]
    assert "image/png" in image["200"]["content"] and {"404", "409"} <= set(image)


def test_the_text_deployment_s_queue_must_hold_every_accepted_job_when_it_is_bound() -> None:
    small = {"deployment": {"max_queued_requests": 10}}
    AppConfig.model_validate({"text_to_image": small})  # not bound without a model: no check
    with pytest.raises(ValidationError, match=r"text_to_image\.deployment\.max_queued_requests"):
        AppConfig.model_validate({"text_to_image": {**small, "model_path": "models/sd"}})
    AppConfig.model_validate(
        {"text_to_image": {"model_path": "models/sd", "deployment": {"max_queued_requests": -1}}}
    )


def test_text_to_image_replicas_run_with_the_model_hub_off() -> None:
    from deployments import TextToImage
    from serve_app.app import OFFLINE_HUB, deployment

    bound = deployment(TextToImage, AppConfig().text_to_image.deployment, env=OFFLINE_HUB)
    assert bound.name == "TextToImage"
    assert bound.ray_actor_options["runtime_env"]["env_vars"]["HF_HUB_OFFLINE"] == "1"
    assert bound.ray_actor_options["num_gpus"] == 0 and bound.max_ongoing_requests == 1
