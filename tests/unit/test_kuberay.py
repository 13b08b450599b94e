"""configs/kuberay/rayservice.yaml: the RayService KubeRay deploys, checked without a cluster.

No copy of KubeRay's RayService CRD schema ships in a package registry (PyPI, npm), so
the manifest is checked against the fields the CRD marks required and the rules the
operator's validation applies (named in each test), plus what this service needs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from serve_app.config import AppConfig, DeploymentOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = REPO_ROOT / "configs" / "kuberay" / "rayservice.yaml"
SERVE_CONFIG = REPO_ROOT / "serve_config.yaml"
SERVE_ENV = REPO_ROOT / "configs" / "serve.env"
SCRIPT = REPO_ROOT / "scripts" / "kuberay.py"
REGENERATE = "run `python scripts/kuberay.py` to regenerate the manifest's generated parts"

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
RTX_5090_PRODUCT = "NVIDIA-GeForce-RTX-5090"
RTX_5090_RESOURCE = "accelerator_type:GeForce-RTX-5090"
#: Kubernetes quantities (the CRD's pattern for resource requests and limits).
QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


def load(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return dict(load(MANIFEST))


@pytest.fixture(scope="module")
def cluster(manifest: dict[str, Any]) -> dict[str, Any]:
    return dict(manifest["spec"]["rayClusterConfig"])


@pytest.fixture(scope="module")
def serve_config(manifest: dict[str, Any]) -> dict[str, Any]:
    return dict(yaml.safe_load(manifest["spec"]["serveConfigV2"]))


def groups(cluster: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "head", cluster["headGroupSpec"]
    for group in cluster["workerGroupSpecs"]:
        yield group["groupName"], group


def containers(cluster: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(group name, pod spec, container) for every container of every group."""
    for name, group in groups(cluster):
        pod = group["template"]["spec"]
        for container in pod["containers"]:
            yield name, pod, container


def ray_resources(group: dict[str, Any]) -> dict[str, float]:
    """The custom resources of ``rayStartParams.resources``, as both readers see them.

    KubeRay's operator trims quotes and backticks around the value and parses JSON (a
    failure there fails the pod); Ray's autoscaler drops the first and last character and
    every backslash. ``ray start`` gets ``--resources=<value>`` through a shell.
    """
    raw = group.get("rayStartParams", {}).get("resources")
    if raw is None:
        return {}
    operator = json.loads(raw.strip("'\"` "))
    autoscaler = json.loads(raw[1:-1].replace("\\", ""))
    assert operator == autoscaler, raw
    assert all(isinstance(v, int) for v in autoscaler.values()), "the autoscaler wants integers"
    return dict(operator)


def quantity(value: str | int | float) -> float:
    text = str(value)
    for suffix, factor in SUFFIX.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


# -- the Serve config ----------------------------------------------------------------------


def test_serve_config_v2_is_serve_config_yaml(serve_config: dict[str, Any]) -> None:
    assert serve_config == load(SERVE_CONFIG), (
        f"serveConfigV2 in {MANIFEST.name} differs from serve_config.yaml: {REGENERATE}"
    )


def test_serve_config_v2_passes_rays_schema_and_app_config(serve_config: dict[str, Any]) -> None:
    schema = ServeDeploySchema.model_validate(serve_config)
    (app,) = schema.applications
    assert app.import_path == "serve_app.app:build_app"
    AppConfig.model_validate(app.args)
    assert schema.http_options.port == 8000


def test_the_manifest_is_what_the_script_generates() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{result.stderr.strip()} ({REGENERATE})"


def test_the_script_regenerates_from_changed_sources(tmp_path: Path) -> None:
    config = load(SERVE_CONFIG)
    config["applications"][0]["args"]["registry"]["max_jobs"] = 1234
    changed_config = tmp_path / "serve_config.yaml"
    changed_config.write_text("# header\n" + yaml.safe_dump(config, sort_keys=False))
    changed_env = tmp_path / "serve.env"
    changed_env.write_text("# comment\nRAY_SERVE_ENABLE_HA_PROXY=0\nEXTRA_SETTING=a b\n")
    copy = tmp_path / "rayservice.yaml"
    copy.write_text(MANIFEST.read_text())
    args = ["--serve-config", changed_config, "--serve-env", changed_env, "--manifest", copy]
    run = [sys.executable, str(SCRIPT), *map(str, args)]

    stale = subprocess.run([*run, "--check"], capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and "out of date" in stale.stderr
    assert subprocess.run(run, capture_output=True, timeout=60).returncode == 0

    regenerated = load(copy)
    assert yaml.safe_load(regenerated["spec"]["serveConfigV2"]) == config
    wanted = [{"name": "RAY_SERVE_ENABLE_HA_PROXY", "value": "0"}]
    wanted.append({"name": "EXTRA_SETTING", "value": "a b"})
    for _, _, container in containers(regenerated["spec"]["rayClusterConfig"]):
        assert container["env"] == wanted
    # Only the generated blocks changed: the hand-written parts and comments are kept.
    original, new = MANIFEST.read_text(), copy.read_text()
    assert "# The label NVIDIA's GPU feature discovery" in new
    original_cluster = load(MANIFEST)["spec"]["rayClusterConfig"]
    for key in ("headGroupSpec", "workerGroupSpecs"):
        assert _without_env(regenerated["spec"]["rayClusterConfig"][key]) == _without_env(
            original_cluster[key]
        )
    assert original != new


def _without_env(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_env(v) for k, v in value.items() if k != "env"}
    if isinstance(value, list):
        return [_without_env(v) for v in value]
    return value


# -- what KubeRay requires -----------------------------------------------------------------


def test_fields_the_rayservice_crd_and_operator_require(
    manifest: dict[str, Any], cluster: dict[str, Any]
) -> None:
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    name = manifest["metadata"]["name"]
    # ValidateRayServiceMetadata: a DNS-1035 label, short enough for derived names.
    assert DNS1035.fullmatch(name) and len(name) <= 40, name
    spec = manifest["spec"]
    # CRD v1: spec requires rayClusterConfig; serveConfigV2 is a string (YAML inside).
    assert isinstance(spec["serveConfigV2"], str)
    assert isinstance(spec["rayClusterConfig"]["headGroupSpec"], dict)
    assert re.fullmatch(r"\d+\.\d+\.\d+", cluster["rayVersion"])
    for group_name, group in groups(cluster):
        # CRD: every group requires a pod template with at least one named container;
        # rayStartParams is a map of strings.
        assert group["template"]["spec"]["containers"], group_name
        for key, value in group.get("rayStartParams", {}).items():
            assert isinstance(value, str), f"{group_name}: rayStartParams.{key} must be a string"
        # The operator refuses resources in both rayStartParams and the group's own field.
        assert not ("resources" in group.get("rayStartParams", {}) and "resources" in group)
    worker_names = [g["groupName"] for g in cluster["workerGroupSpecs"]]
    assert len(set(worker_names)) == len(worker_names)
    for group in cluster["workerGroupSpecs"]:
        # CRD: groupName, minReplicas, maxReplicas and template are required.
        assert DNS1035.fullmatch(group["groupName"])
        assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
    for group_name, pod, container in containers(cluster):
        assert container["name"] and container["image"], group_name
        for kind in ("requests", "limits"):
            for resource, amount in container.get("resources", {}).get(kind, {}).items():
                assert QUANTITY.fullmatch(str(amount)), (group_name, resource, amount)
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes and mount["mountPath"].startswith("/")
        for variable in container.get("env", []):
            assert isinstance(variable["value"], str), variable


# -- resources and placement ---------------------------------------------------------------


def test_the_head_has_no_gpu_and_runs_no_replicas(cluster: dict[str, Any]) -> None:
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert head["rayStartParams"]["num-cpus"] == "0"
    for container in head["template"]["spec"]["containers"]:
        for kind in ("requests", "limits"):
            assert "nvidia.com/gpu" not in container.get("resources", {}).get(kind, {})


def test_a_cpu_group_and_an_rtx_5090_group(cluster: dict[str, Any]) -> None:
    gpu = [g for g in cluster["workerGroupSpecs"] if _gpus(g) > 0]
    cpu = [g for g in cluster["workerGroupSpecs"] if _gpus(g) == 0]
    assert cpu and len(gpu) == 1
    for group in cpu:
        assert group["rayStartParams"].get("num-gpus") == "0"
        assert RTX_5090_RESOURCE not in ray_resources(group)
    (group,) = gpu
    pod = group["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {GPU_PRODUCT_LABEL: RTX_5090_PRODUCT}
    assert ray_resources(group) == {RTX_5090_RESOURCE: 1}


def _gpus(group: dict[str, Any]) -> int:
    return sum(
        int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
        for c in group["template"]["spec"]["containers"]
    )


def test_every_deployment_fits_a_worker_group(
    cluster: dict[str, Any], serve_config: dict[str, Any]
) -> None:
    """Each deployment's replica (CPUs, GPUs, accelerator, memory) fits one worker pod."""
    config = AppConfig.model_validate(serve_config["applications"][0]["args"])
    deployments = {
        name: value
        for name in type(config).model_fields
        if isinstance(value := getattr(config, name), DeploymentOptions)
    }
    deployments |= {  # the deployments a section configures beside its own settings
        f"{name}.deployment": value.deployment
        for name in type(config).model_fields
        if isinstance(
            getattr(value := getattr(config, name), "deployment", None), DeploymentOptions
        )
    }
    assert {"ingress", "background_removal", "shape_texture"} <= set(deployments)
    assert {"mesh_tools.deployment", "text_to_image.deployment"} <= set(deployments)
    for name, replica in deployments.items():
        fits = []
        for group in cluster["workerGroupSpecs"]:
            (container,) = group["template"]["spec"]["containers"]
            limits = container["resources"]["limits"]
            # Ray keeps 30 % of a node's memory for its object store by default.
            memory = 0.7 * quantity(limits["memory"])
            accelerator_ok = replica.accelerator_type is None or (
                ray_resources(group).get(f"accelerator_type:{replica.accelerator_type}", 0) >= 1
            )
            fits.append(
                quantity(limits["cpu"]) >= replica.num_cpus
                and _gpus(group) >= replica.num_gpus
                and accelerator_ok
                and memory >= (replica.memory_bytes or 0)
            )
        assert any(fits), f"no worker group can hold one {name} replica"


# -- environment and volumes -----------------------------------------------------------------


def test_every_container_gets_serve_env(cluster: dict[str, Any]) -> None:
    wanted = []
    for line in SERVE_ENV.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            wanted.append({"name": key.strip(), "value": value.strip()})
    assert wanted
    for group_name, _, container in containers(cluster):
        assert container["env"] == wanted, (
            f"{group_name}: env is not configs/serve.env; {REGENERATE}"
        )


def test_the_shared_volume_holds_every_path_the_config_names(
    cluster: dict[str, Any], serve_config: dict[str, Any]
) -> None:
    args = serve_config["applications"][0]["args"]
    config = AppConfig.model_validate(args)
    paths = {
        PurePosixPath(str(config.storage.root)),
        PurePosixPath(str(config.pipeline.models_dir)),
    }
    assert config.registry.journal_path is not None
    paths.add(PurePosixPath(str(config.registry.journal_path)).parent)
    paths.update(PurePosixPath(p) for p in _absolute_paths(args))  # any other path set there
    for group_name, pod, container in containers(cluster):
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod.get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        mounts = [
            (PurePosixPath(m["mountPath"]), claims.get(m["name"]))
            for m in container.get("volumeMounts", [])
        ]
        for path in paths:
            owners = {claim for mount, claim in mounts if path.is_relative_to(mount) and claim}
            assert owners == {"orfeas-shared"}, f"{group_name}: {path} is not on the shared volume"


def _absolute_paths(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _absolute_paths(item)
    elif isinstance(value, list):
        for item in value:
            yield from _absolute_paths(item)
    elif isinstance(value, str) and value.startswith("/") and "://" not in value:
        yield value
