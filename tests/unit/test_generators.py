"""Choosing a generator: config, parameters resolved from quality, cache keys, the API's 422s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from fastapi.testclient import TestClient
from pydantic import ValidationError

from serve_app.api.app import create_api
from serve_app.api.deps import Services
from serve_app.config import AppConfig
from serve_app.contracts.params import TUNABLES, GenerationParams
from serve_app.errors import ValidationFailedError
from serve_app.pipeline.config import PipelineConfig
from serve_app.pipeline.generators.catalog import SPECS, resolve_params
from serve_app.pipeline.meshclean import clean_mesh
from serve_app.registry.cache import cache_key
from serve_app.storage import ArtifactStore

#: hunyuan3d's denoising steps per quality 1..10, as GenerationParams' field defines them.
HUNYUAN3D_STEPS = TUNABLES["steps"].default

HUNYUAN3D = {"hunyuan3d": {"model_path": "/models/hunyuan3d-dit-v2-0"}}


def test_inflate_is_always_enabled_and_hunyuan3d_needs_a_model_path() -> None:
    assert PipelineConfig().generators.enabled() == ["inflate"]
    both = PipelineConfig.model_validate({"generator": "hunyuan3d", "generators": HUNYUAN3D})
    assert both.generators.enabled() == ["inflate", "hunyuan3d"]
    settings = both.generators.hunyuan3d
    assert settings is not None and (settings.device, settings.dtype) == ("auto", "auto")
    with pytest.raises(ValidationError, match="generators.hunyuan3d.model_path"):
        PipelineConfig.model_validate({"generators": {"hunyuan3d": {"device": "cuda"}}})
    with pytest.raises(ValidationError, match="generators.shap_e"):
        PipelineConfig.model_validate({"generators": {"shap_e": {}}})
    with pytest.raises(ValidationError, match="dtype"):
        PipelineConfig.model_validate(
            {"generators": {"hunyuan3d": {"model_path": "/m", "dtype": "float64"}}}
        )


def test_the_default_generator_must_be_enabled() -> None:
    with pytest.raises(ValidationError, match="'hunyuan3d' is not enabled; enabled: inflate"):
        PipelineConfig(generator="hunyuan3d")
    with pytest.raises(ValidationError, match="'nope' is not enabled"):
        AppConfig.model_validate({"pipeline": {"generator": "nope"}})


def test_relative_model_paths_resolve_against_the_app_directory(tmp_path: Path) -> None:
    config = AppConfig.model_validate(
        {"pipeline": {"generators": {"hunyuan3d": {"model_path": "models/hy"}}}}
    ).resolved(tmp_path)
    hunyuan3d = config.pipeline.generators.hunyuan3d
    assert hunyuan3d is not None and hunyuan3d.model_path == tmp_path / "models" / "hy"


def test_parameters_default_from_quality_and_explicit_defaults_change_nothing() -> None:
    for quality in (1, 5, 10):
        resolved = resolve_params("hunyuan3d", GenerationParams(quality=quality))
        assert resolved.steps == HUNYUAN3D_STEPS[quality - 1]
        assert set(resolved.given()) == set(SPECS["hunyuan3d"].parameters)
    omitted = resolve_params("hunyuan3d", GenerationParams(quality=3))
    explicit = resolve_params(
        "hunyuan3d",
        GenerationParams(
            quality=3, seed=0, steps=15, guidance_scale=5, mc_level=0, num_chunks=8000
        ),
    )
    assert explicit == omitted
    key = lambda p: cache_key("ab" * 32, p, "u2netp", "hunyuan3d", "v")  # noqa: E731
    assert key(explicit) == key(omitted)
    assert key(resolve_params("hunyuan3d", GenerationParams(quality=3, seed=1))) != key(omitted)
    assert resolve_params("hunyuan3d", omitted) == omitted  # resolving twice is a no-op


def test_inflate_takes_no_tuning_parameters() -> None:
    assert resolve_params("inflate", GenerationParams(quality=4)) == GenerationParams(quality=4)
    with pytest.raises(
        ValidationFailedError, match="steps: not a parameter of generator 'inflate'"
    ):
        resolve_params("inflate", GenerationParams(steps=10))


@pytest.mark.parametrize("backend", ["pymeshlab", "fast-simplification"])
def test_clean_up_drops_floaters_and_meets_the_face_budget(backend: str) -> None:
    big = trimesh.creation.icosphere(subdivisions=5)  # 20480 faces
    speck = trimesh.creation.icosphere(subdivisions=0, radius=0.01)  # 20 faces, far away
    speck.apply_translation([5.0, 0.0, 0.0])
    both = trimesh.util.concatenate([big, speck])
    faces = np.vstack([both.faces, both.faces[:1]])  # a duplicate face too
    vertices, cleaned = clean_mesh(both.vertices, faces, 5000, backend)  # type: ignore[arg-type]
    assert vertices.dtype == np.float32 and cleaned.dtype == np.int64
    assert 4000 <= len(cleaned) <= 5000
    assert vertices[:, 0].max() < 1.5  # the speck is gone
    result = trimesh.Trimesh(vertices, cleaned)
    assert result.is_watertight and result.volume == pytest.approx(big.volume, rel=0.05)


class UncalledRegistry:
    """Requests refused by validation never reach the registry."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the registry was called ({name}) for an invalid request")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    config = AppConfig.model_validate(
        {
            "storage": {"root": str(tmp_path_factory.mktemp("store"))},
            "pipeline": {"generators": HUNYUAN3D},
        }
    )
    services = Services(
        config=config,
        store=ArtifactStore(config.storage.root),
        registry=UncalledRegistry(),  # type: ignore[arg-type]
        jobs=UncalledRegistry(),  # type: ignore[arg-type]
    )
    return TestClient(create_api(services))


JOB = "0" * 32


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", -1),
        ("seed", 2**32),
        ("steps", 0),
        ("steps", 101),
        ("guidance_scale", 20.5),
        ("octree_resolution", 8),
        ("octree_resolution", 1024),
        ("num_chunks", 10),
        ("mc_level", 1.5),
        ("face_count", 100),
        ("face_count", 10**7),
        ("steps", 2.5),
    ],
)
def test_out_of_range_parameters_are_422_naming_the_field(
    api: TestClient, field: str, value: object
) -> None:
    response = api.post(
        "/api/generate-3d", json={"job_id": JOB, "generator": "hunyuan3d", field: value}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["message"].startswith(f"{field}: ")


def test_a_generator_not_enabled_is_422_listing_those_enabled(api: TestClient) -> None:
    response = api.post("/api/generate-3d", json={"job_id": JOB, "generator": "shap-e"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert (
        error["message"] == "generator: 'shap-e' is not enabled here; enabled: inflate, hunyuan3d"
    )
    assert error["enabled"] == ["inflate", "hunyuan3d"]
    response = api.post("/api/generate-3d", json={"job_id": JOB, "generator": "../../etc"})
    assert response.status_code == 422 and "../../etc" not in response.text


def test_a_parameter_the_generator_does_not_take_is_422(api: TestClient) -> None:
    response = api.post(
        "/api/generate-3d", json={"job_id": JOB, "generator": "inflate", "octree_resolution": 64}
    )
    assert response.status_code == 422
    assert response.json()["error"]["message"] == (
        "octree_resolution: not a parameter of generator 'inflate' "
        "(used by: hunyuan3d, hunyuan3d_mv)"
    )


def test_openapi_documents_each_parameter_with_its_generator_and_default(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()["components"]["schemas"]["GenerateRequest"]
    props = schema["properties"]
    for name in SPECS["hunyuan3d"].parameters:
        assert props[name]["description"].startswith("hunyuan3d, hunyuan3d_mv: "), name
        assert "default" in props[name]["description"], name
    assert "1..10: 5, 10, 15" in props["steps"]["description"]
    assert "inflate" in props["generator"]["description"]
