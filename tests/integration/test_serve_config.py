"""The Serve config files pass Ray's own schema, and their ``args`` pass AppConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from serve_app.config import AppConfig
from tests.support import config_from_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILES = [REPO_ROOT / "serve_config.yaml", REPO_ROOT / "configs" / "local.yaml"]


def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        return dict(yaml.safe_load(f))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_config_file_is_a_valid_serve_deploy_config(path: Path) -> None:
    schema = ServeDeploySchema.model_validate(load(path))
    (app,) = schema.applications
    assert app.import_path == "serve_app.app:build_app"
    assert app.route_prefix == "/"
    config = AppConfig.model_validate(app.args)
    workers = (config.background_removal, config.shape_texture, config.mesh_tools.deployment)
    for options in (config.ingress, *workers):
        assert options.max_ongoing_requests >= 1
        assert options.graceful_shutdown_timeout_s > 0


def test_cluster_config_pins_one_rtx_5090_per_shape_replica_and_autoscales() -> None:
    config = config_from_yaml(REPO_ROOT / "serve_config.yaml")
    shape = config.shape_texture
    assert shape.num_gpus == 1
    assert shape.accelerator_type == "GeForce-RTX-5090"
    assert shape.graceful_shutdown_timeout_s >= 300  # long enough to finish a GPU job
    for options in (config.ingress, config.background_removal, shape):
        assert options.autoscaling is not None
        assert options.max_queued_requests > 0
    assert config.storage.root.is_absolute() and config.pipeline.models_dir.is_absolute()
    actor = shape.serve_options("ShapeTexture")["ray_actor_options"]
    assert actor["num_gpus"] == 1 and actor["accelerator_type"] == "GeForce-RTX-5090"


def test_local_config_runs_on_cpu_on_port_8000() -> None:
    schema = ServeDeploySchema.model_validate(load(REPO_ROOT / "configs" / "local.yaml"))
    assert schema.http_options.port == 8000
    config = AppConfig.model_validate(schema.applications[0].args)
    assert config.shape_texture.num_gpus == 0
    assert config.shape_texture.accelerator_type is None
    assert config.pipeline.generator == "inflate"
    assert config.pipeline.generators.enabled() == ["inflate"]  # no weights needed


def test_cluster_config_serves_hunyuan3d_in_fp16_by_default_and_inflate_too() -> None:
    pipeline = config_from_yaml(REPO_ROOT / "serve_config.yaml").pipeline
    assert pipeline.generator == "hunyuan3d"
    assert pipeline.generators.enabled() == ["inflate", "hunyuan3d"]
    hunyuan3d = pipeline.generators.hunyuan3d
    assert hunyuan3d is not None
    assert (hunyuan3d.device, hunyuan3d.dtype) == ("cuda", "float16")
    assert hunyuan3d.model_path.is_absolute()
    assert hunyuan3d.model_path.name == "hunyuan3d-dit-v2-0"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"shape_texture": {"num_gpu": 1}}, "shape_texture.num_gpu"),
        ({"storage": {"rot": "/data"}}, "storage.rot"),
        ({"pipeline": {"generator": "inflate", "devise": "cpu"}}, "pipeline.devise"),
        ({"ingress": {"autoscaling": {"max_replica": 3}}}, "ingress.autoscaling.max_replica"),
        ({"extra_section": {}}, "extra_section"),
    ],
)
def test_a_config_typo_fails_with_a_message_naming_the_field(
    args: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        AppConfig.model_validate(args)
    assert field in str(info.value)
    assert "Extra inputs are not permitted" in str(info.value)


@pytest.mark.parametrize(
    "options",
    [
        {"accelerator_type": "GeForce-RTX-5090"},
        {"num_replicas": 2, "autoscaling": {"min_replicas": 1, "max_replicas": 2}},
        {"autoscaling": {"min_replicas": 3, "max_replicas": 2}},
        {"max_ongoing_requests": 0},
    ],
)
def test_inconsistent_deployment_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="shape_texture"):
        AppConfig.model_validate({"shape_texture": options})


@pytest.mark.integration
def test_build_app_validates_args_and_creates_the_named_actors(
    ray_serve: str, tmp_path: Path
) -> None:
    import ray
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    from serve_app.app import build_app

    with pytest.raises(ValidationError, match="shape_texture.num_gpu"):
        call_user_app_builder_with_args_if_necessary(build_app, {"shape_texture": {"num_gpu": 1}})
    args = load_args("configs/local.yaml")
    name = "job_registry_build_test"
    args["storage"] = {"root": str(tmp_path)}
    args["registry"] = {**args["registry"], "name": name, "actor": {"max_concurrency": 64}}
    args["security"] = {"per_ip_rate": {"rate_per_s": 5, "burst": 5}}
    try:
        app = call_user_app_builder_with_args_if_necessary(build_app, args)
        assert type(app).__name__ == "Application"
        named = ray.util.list_named_actors(all_namespaces=True)
        actors = {a["name"]: a for a in named if name in a["name"]}
        assert set(actors) == {name, f"{name}_rate_limiter"}
        assert {a["namespace"] for a in actors.values()} == {"orfeas"}
        registry = ray.get_actor(name, namespace="orfeas")
        # Built again (a redeploy): the same actor adopts the config, no second one appears.
        call_user_app_builder_with_args_if_necessary(build_app, args)
        assert ray.get(registry.served_calls.remote(), timeout=30)["configure"] == 2
    finally:
        for actor in (name, f"{name}_rate_limiter"):
            ray.kill(ray.get_actor(actor, namespace="orfeas"), no_restart=True)


def load_args(relative: str) -> dict[str, Any]:
    return dict(load(REPO_ROOT / relative)["applications"][0]["args"])
