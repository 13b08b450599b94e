"""Text jobs over real Ray Serve: a prompt to a picture to a model, and text to 3D in one job.

The application (``text_service``, at ``/text``) runs beside the session's default one with
the tiny random Stable Diffusion pipeline that this process saved to disk; its TextToImage
replica loads it from there with the hub off. Its pictures are noise with some structure:
the model stages may refuse one (background removal finds no subject), and then the job
must say so — failed, with the stage and the code — never hang.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from serve_app.contracts.stages import MODEL_STAGES
from serve_app.pipeline.text_params import prompt_sha256
from tests.client import TERMINAL, Api, Service
from tests.gltf_validator import validate_glb
from tests.integration.test_live import changes, watch_sse, watch_ws
from tests.serving import wait_until

pytestmark = pytest.mark.integration

PROMPT = "a small ceramic owl on a plain white table"
#: Small and quick on a 2-core CPU: three or four denoising steps at 64 to 128 pixels.
PICTURE = {"steps": 4, "width": 128, "height": 128}
JOB_TIMEOUT_S = 180.0
MODEL_STAGE_NAMES = [str(stage) for stage in MODEL_STAGES]


@pytest.fixture(scope="module")
def api(text_service: Service) -> Iterator[Api]:
    with httpx.Client(base_url=text_service.url, timeout=60.0) as client:
        api = Api(client, text_service)
        wait_until(lambda: text_model_ready(api), 120, "the text-to-image model loaded")
        yield api


def text_model_ready(api: Api) -> dict[str, Any] | None:
    body = dict(api.client.get("/api/health").json())
    check = body["checks"].get("text_to_image", {})
    return body if check.get("ok") else None


def make_picture(api: Api, **body: Any) -> httpx.Response:
    return api.client.post("/api/text-to-image", json={"prompt": PROMPT, **body})


def registry_calls(name: str) -> int:
    """How many calls of ``name`` the text application's registry has served."""
    import ray

    actor = ray.get_actor("job_registry_text", namespace="orfeas")
    return int(ray.get(actor.served_calls.remote()).get(name, 0))


def assert_model_or_clear_refusal(api: Api, job: dict[str, Any]) -> None:
    """A model run's end: a valid model, or an error naming the stage and the code."""
    assert job["status"] in ("completed", "failed"), job
    if job["status"] == "completed":
        glb = api.client.get(job["outputs"]["glb"])
        assert glb.status_code == 200 and validate_glb(glb.content)["numErrors"] == 0
        return
    error = job["error"]
    assert error["stage"] in MODEL_STAGE_NAMES, error
    assert error["code"] in ("no_subject", "no_surface"), error
    assert error["message"] and "Traceback" not in error["message"]
    assert job["outputs"] == {} and job["progress"] < 100.0


def test_health_shows_the_text_model(api: Api) -> None:
    body = text_model_ready(api)
    assert body is not None and body["status"] == "ok"
    assert body["checks"]["text_to_image"]["detail"].endswith("-float32")  # its version
    assert body["checks"]["deployment:TextToImage"]["ok"]


def test_a_prompt_makes_a_picture_which_generate_3d_then_models(api: Api) -> None:
    answer = make_picture(api, seed=6, **PICTURE)
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    job_id = accepted["job_id"]
    assert accepted["status"] == "queued" and accepted["stages"] == ["text_to_image"]
    assert PROMPT not in answer.text
    assert accepted["text_to_image"]["prompt_sha256"] == prompt_sha256(PROMPT)

    job = api.wait(job_id, JOB_TIMEOUT_S)
    assert job["status"] == "completed", job
    assert job["stage"] == "text_to_image" and job["progress"] == 100.0
    assert job["outputs"] == {} and job["stage_durations"]["text_to_image"] > 0
    text = job["text_to_image"]
    assert text["made"] and not text["cached"] and text["seed"] == 6 and text["steps"] == 4
    picture = api.client.get(job["image_url"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(picture.content)) as image:
        assert image.format == "PNG" and image.size == (128, 128)
    assert api.client.get(f"/download/{job_id}/glb").status_code == 409  # no model yet

    log = api.client.get(f"/api/jobs/{job_id}/logs").json()["entries"]
    events = [entry["event"] for entry in log]
    assert events[:2] == ["queued", "started"] and "image_made" in events
    assert not any("owl" in entry["message"] for entry in log)

    model = api.generate(job_id, format="glb", quality=1)
    assert model.status_code == 202, model.text
    assert model.json()["run"] == 2 and model.json()["stages"] == MODEL_STAGE_NAMES
    modelled = api.wait(job_id, JOB_TIMEOUT_S)
    assert modelled["run"] == 2 and modelled["source"] == "prompt"
    assert_model_or_clear_refusal(api, modelled)
    assert api.client.get(f"/api/jobs/{job_id}/image").content == picture.content


def test_the_same_prompt_parameters_and_model_give_the_cached_picture(api: Api) -> None:
    first = make_picture(api, seed=31, steps=3, width=64, height=64).json()["job_id"]
    made = api.wait(first, JOB_TIMEOUT_S)
    assert made["status"] == "completed" and not made["text_to_image"]["cached"], made
    beats = registry_calls("heartbeat")

    again = make_picture(api, seed=31, steps=3, width=64, height=64).json()["job_id"]
    cached = api.wait(again, JOB_TIMEOUT_S)
    assert cached["status"] == "completed" and cached["cached"], cached
    assert cached["text_to_image"]["cached"]
    assert registry_calls("heartbeat") == beats  # no TextToImage replica worked on it
    pictures = [api.client.get(f"/api/jobs/{job}/image").content for job in (first, again)]
    assert pictures[0] == pictures[1]

    other = make_picture(api, seed=32, steps=3, width=64, height=64).json()["job_id"]
    assert not api.wait(other, JOB_TIMEOUT_S)["cached"]


#: Seeds no other test asks for, so nothing comes from a cache; with the tiny model, one
#: picture's subject is refused and the other's modelled (as measured on a 2-core CPU).
@pytest.mark.parametrize("seed", [0, 2])
def test_text_to_3d_in_one_request_is_one_job_through_five_stages(api: Api, seed: int) -> None:
    body = {"seed": seed, **PICTURE, "generate_3d": {"format": "glb", "quality": 1}}
    answer = make_picture(api, **body)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    assert answer.json()["stages"] == ["text_to_image", *MODEL_STAGE_NAMES]

    async def watch() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with httpx.AsyncClient(base_url=api.service.url, timeout=60.0) as client:
            sse = watch_sse(client, job_id)
            ws = watch_ws(api, job_id)
            (sse_events, (ws_events, code, _)) = await asyncio.gather(sse, ws)
            assert code == 1000
            return sse_events, ws_events

    sse_events, ws_events = asyncio.run(watch())
    for events in (sse_events, ws_events):
        assert events[-1]["status"] in TERMINAL
        assert all(e["run"] == 1 and e["job_id"] == job_id for e in events)
        progress = [e["progress"] for e in events]
        assert progress == sorted(progress), progress  # one bar, never backwards
        running = [e["progress"] for e in events if e["status"] != "completed"]
        assert all(p < 100.0 for p in running)
        stages = changes([e["stage"] for e in events if e["stage"]])
        assert stages[0] == "text_to_image" and stages == sorted(
            stages, key=["text_to_image", *MODEL_STAGE_NAMES].index
        )
    job = api.status(job_id)
    assert job["run"] == 1 and job["status"] == sse_events[-1]["status"]
    assert job["text_to_image"]["made"] and job["image_url"]  # the picture exists either way
    assert_model_or_clear_refusal(api, job)
    if job["status"] == "completed":
        assert job["progress"] == 100.0 and job["stage"] == "export"
        assert set(job["stage_durations"]) == {"text_to_image", *MODEL_STAGE_NAMES}


def test_cancel_stops_a_picture_between_steps(api: Api) -> None:
    body = {"seed": 5, "steps": 60, "width": 256, "height": 256, "generate_3d": {}}
    job_id = make_picture(api, **body).json()["job_id"]
    api.wait_for(job_id, lambda j: j["progress"] > 0, JOB_TIMEOUT_S, "a denoising step")
    answer = api.client.post(f"/api/jobs/{job_id}/cancel")
    assert answer.status_code == 200, answer.text
    job = api.wait(job_id, 60)
    assert job["status"] == "cancelled", job
    assert job["error"]["code"] == "cancelled" and job["error"]["stage"] == "text_to_image"
    assert job["progress"] < 30.0 and not job["text_to_image"]["made"]
    assert api.client.get(f"/api/jobs/{job_id}/image").status_code == 409
    log = [e["event"] for e in api.client.get(f"/api/jobs/{job_id}/logs").json()["entries"]]
    assert "cancelled" in log


def test_hostile_and_oversized_requests_are_422_and_start_nothing(api: Api) -> None:
    before = api.client.get("/api/jobs").json()["total"]
    for body in (
        {"prompt": "a\x00mug"},
        {"prompt": "x" * 10_000},
        {"prompt": "a mug", "width": 512, "height": 512},  # over this service's max_pixels
        {"prompt": "a mug", "steps": 61},  # over its max_steps
        {"prompt": "a mug", "generate_3d": {"generator": "hunyuan3d"}},  # not enabled here
    ):
        response = api.client.post("/api/text-to-image", json=body)
        assert response.status_code == 422, (body, response.text)
        assert "\x00" not in response.text and "xxxxxxxx" not in response.text
    assert api.client.get("/api/jobs").json()["total"] == before
