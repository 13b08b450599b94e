"""Text-to-image without a configured model says so plainly and never fakes an image."""

import pytest

pytestmark = pytest.mark.integration


def test_text_to_image_without_a_model_is_503_naming_the_setting(api) -> None:
    response = api.client.post("/api/text-to-image", json={"prompt": "a red ceramic mug"})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_not_configured"
    assert "text-to-image is not configured" in error["message"]
    assert error["feature"] == "text_to_image"
    assert error["setting"] == "text_to_image.model_path"


@pytest.mark.parametrize(
    "body",
    [{}, {"prompt": ""}, {"prompt": "x" * 1001}, {"prompt": 3}, {"prompt": "a\x1b[2Jmug"}],
)
def test_text_to_image_rejects_a_bad_prompt_with_422(api, body) -> None:
    response = api.client.post("/api/text-to-image", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error" and "prompt" in error["message"]


def test_without_a_model_no_text_to_image_deployment_is_part_of_the_graph(api) -> None:
    checks = api.client.get("/api/health").json()["checks"]
    assert "deployment:Ingress" in checks and "deployment:ShapeTexture" in checks
    assert "deployment:TextToImage" not in checks and "text_to_image" not in checks
