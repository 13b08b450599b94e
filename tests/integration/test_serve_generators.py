"""Both generators behind one service: a hunyuan3d job and an inflate job over HTTP, two
hunyuan3d jobs at once on one replica, and a missing VAE directory in readiness.

The application runs beside the session's main one (its own registry, storage and route
prefix) with ``hunyuan3d`` enabled as the default, on a tiny random Hunyuan3D-2 that this
process writes to disk before deploying; the ShapeTexture replica loads it from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.client import Api, Service
from tests.gltf_validator import validate_glb
from tests.serving import app_args, deploy, wait_until

APP = "orfeas-generators"
PREFIX = "/generators"
#: Small enough for a 2-core CPU: a 33³ grid and three denoising steps.
FAST = {"octree_resolution": 32, "steps": 3, "face_count": 4000}


@pytest.fixture(scope="module")
def api(
    ray_serve: str, tmp_path_factory: pytest.TempPathFactory, tiny_hunyuan3d: Path
) -> Iterator[Api]:
    from ray import serve

    storage_root = tmp_path_factory.mktemp("generators-storage")
    args: dict[str, Any] = app_args(storage_root)
    args["pipeline"]["generator"] = "hunyuan3d"
    args["pipeline"]["generators"] = {
        "hunyuan3d": {"model_path": str(tiny_hunyuan3d), "device": "cpu"}
    }
    args["registry"] = {"name": "job_registry_generators"}
    args["shape_texture"]["max_ongoing_requests"] = 2  # as shipped: two runs overlap
    deploy(args, name=APP, route_prefix=PREFIX)
    try:
        with httpx.Client(base_url=ray_serve + PREFIX, timeout=60.0) as client:
            yield Api(client, Service(url=ray_serve + PREFIX, storage_root=storage_root))
    finally:
        serve.delete(APP)


def generators_ready(api: Api) -> dict[str, Any] | None:
    response = api.client.get("/api/health")
    body = dict(response.json())
    checks = body["checks"]
    loaded = all(checks.get(f"generator:{n}", {}).get("ok") for n in ("inflate", "hunyuan3d"))
    return body if response.status_code == 200 and loaded else None


def test_health_reports_both_generators_loaded(api: Api) -> None:
    body = wait_until(lambda: generators_ready(api), 60, "both generators loaded")
    assert body["status"] == "ok"
    assert body["checks"]["generator:inflate"]["detail"] == "inflate-1"
    version = body["checks"]["generator:hunyuan3d"]["detail"]
    assert version.startswith("hunyuan3d-2+hy3dgen2.0.2+")
    assert "+vae-own+dense+standard+float32" in version  # auto: dense, a tiny VAE on the CPU
    listing = api.client.get("/api/generators").json()
    assert listing["default"] == "hunyuan3d"
    by_name = {g["name"]: g for g in listing["generators"]}
    assert list(by_name) == ["inflate", "hunyuan3d"]
    assert by_name["hunyuan3d"]["loaded"] and by_name["inflate"]["loaded"]
    assert by_name["hunyuan3d"]["default"] and not by_name["inflate"]["default"]
    assert "steps" in by_name["hunyuan3d"]["parameters"] and by_name["inflate"]["parameters"] == []
    hunyuan3d = by_name["hunyuan3d"]
    assert hunyuan3d["device"] == "cpu" and "octree_resolution 128" in hunyuan3d["note"]
    assert [d["octree_resolution"] for d in hunyuan3d["defaults"]] == [128] * 10
    assert [d["steps"] for d in hunyuan3d["defaults"]][:2] == [5, 10]


def test_a_hunyuan3d_job_and_an_inflate_job_complete(api: Api) -> None:
    wait_until(lambda: generators_ready(api), 60, "both generators loaded")
    photo = api.unique_photo()
    neural = api.upload(photo)
    response = api.generate(neural, format="glb", quality=2, **FAST)  # the default generator
    assert response.status_code == 202, response.text
    inflated = api.upload(api.photo("coffee"))
    response = api.generate(inflated, format="glb", quality=2, generator="inflate")
    assert response.status_code == 202, response.text

    done = api.wait(neural, timeout_s=240)
    assert done["status"] == "completed", done
    assert done["generator"] == "hunyuan3d" and not done["cached"]
    assert done["generator_version"].startswith("hunyuan3d-2+hy3dgen2.0.2+")
    assert done["parameters"] == {
        "seed": 0,
        "steps": 3,
        "guidance_scale": 5.0,
        "octree_resolution": 32,
        "num_chunks": 8000,
        "mc_level": 0.0,
        "face_count": 4000,
    }
    assert isinstance(done["watertight"], bool)
    glb = api.client.get(f"/download/{neural}/glb")
    assert glb.status_code == 200
    assert validate_glb(glb.content)["numErrors"] == 0

    other = api.wait(inflated, timeout_s=240)
    assert other["status"] == "completed", other
    assert other["generator"] == "inflate" and other["generator_version"] == "inflate-1"
    assert other["parameters"] == {} and other["watertight"] is True

    # The same photo asked for with every default spelled out: the same model, from cache.
    again = api.upload(photo)
    explicit = {**FAST, "seed": 0, "guidance_scale": 5, "num_chunks": 8000, "mc_level": 0}
    response = api.generate(again, format="glb", quality=2, generator="hunyuan3d", **explicit)
    assert response.status_code == 202, response.text
    cached = api.wait(again)
    assert cached["status"] == "completed" and cached["cached"], cached
    assert cached["watertight"] == done["watertight"]
    assert cached["generator_version"] == done["generator_version"]


def test_parameters_the_generator_does_not_take_are_refused(api: Api) -> None:
    job = api.upload(api.photo("astronaut"))
    response = api.generate(job, generator="inflate", steps=4)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("steps: not a parameter")
    response = api.generate(job, generator="shap_e")
    assert response.status_code == 422
    assert response.json()["error"]["enabled"] == ["inflate", "hunyuan3d"]
    response = api.generate(job, octree_resolution=4096)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("octree_resolution: ")


def test_the_shape_replica_stores_under_the_key_the_registry_computed(api: Api) -> None:
    """The registry keys each run once (generator version and cache key, in the ticket);
    the ShapeTexture replica stores the model under that key and refuses a ticket keyed
    for another version of its generator (the run is then retried under the new key)."""
    import asyncio
    import hashlib

    import numpy as np
    import ray
    from ray import serve

    from serve_app.contracts.params import GenerationParams
    from serve_app.contracts.runs import JobTicket, RunRequest, UploadInfo
    from serve_app.errors import GeneratorVersionChangedError, OrfeasError, WorkerLostError
    from serve_app.pipeline.config import PipelineConfig
    from serve_app.pipeline.types import CutOut
    from serve_app.ray_errors import as_orfeas_error
    from serve_app.registry.cache import cache_key
    from serve_app.storage import ArtifactStore

    wait_until(lambda: generators_ready(api), 60, "both generators loaded")
    photo = api.unique_photo()
    job = api.upload(photo)
    response = api.generate(job, format="stl", quality=3, generator="inflate")
    assert response.status_code == 202, response.text
    done = api.wait(job)
    assert done["status"] == "completed" and not done["cached"], done
    key = cache_key(
        hashlib.sha256(photo).hexdigest(),
        GenerationParams(quality=3),
        "u2netp",
        "inflate",
        done["generator_version"],
        texture=PipelineConfig().texture_version,
    )
    store = ArtifactStore(api.service.storage_root)
    assert store.mesh_path(key).is_file() and store.export_path(key, "stl").is_file()

    upload = UploadInfo(hashlib.sha256(photo).hexdigest(), len(photo), "image/png")
    request = RunRequest(GenerationParams(quality=3), "stl", "inflate")
    stale = JobTicket(job, 99, upload, request, "inflate-0", "f" * 64)
    cutout = CutOut(np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8), bool))

    @ray.remote
    def ask_the_replica(ticket: JobTicket, cutout: CutOut) -> tuple[str, OrfeasError | None]:
        """Its generator's version, and its answer to ``ticket`` (from a task of the
        cluster, so that no handle is left in this process's event loops)."""

        async def ask() -> tuple[str, OrfeasError | None]:
            shape = serve.get_deployment_handle("ShapeTexture", app_name=APP)
            version: str = await shape.generator_version.remote("inflate")
            try:
                await shape.build.remote(ticket, cutout)
            except Exception as exc:  # Ray wraps the replica's error
                return version, as_orfeas_error(exc)
            return version, None

        return asyncio.run(ask())

    version, error = ray.get(ask_the_replica.remote(stale, cutout), timeout=120)
    assert version == done["generator_version"]
    assert isinstance(error, GeneratorVersionChangedError), error
    assert isinstance(error, WorkerLostError)  # the registry retries such a run
    assert error.details["version"] == done["generator_version"]
    assert not store.mesh_path("f" * 64).exists()


def test_two_hunyuan3d_jobs_at_once_on_one_replica_complete_with_their_own_meshes(
    api: Api,
) -> None:
    wait_until(lambda: generators_ready(api), 60, "both generators loaded")
    jobs = [api.upload(api.unique_photo()) for _ in range(2)]
    for seed, job in enumerate(jobs):
        response = api.generate(job, format="glb", quality=1, seed=seed, **FAST)
        assert response.status_code == 202, response.text
    done = [api.wait(job, timeout_s=300) for job in jobs]
    assert all(d["status"] == "completed" and not d["cached"] for d in done), done
    assert [d["parameters"]["seed"] for d in done] == [0, 1]
    models = [api.client.get(f"/download/{job}/glb").content for job in jobs]
    assert all(validate_glb(m)["numErrors"] == 0 for m in models)
    assert models[0] != models[1]


def test_a_missing_vae_path_is_named_in_readiness_and_inflate_keeps_serving(
    api: Api, tiny_hunyuan3d: Path, tmp_path: Path
) -> None:
    # Last in this file: the application is redeployed without a usable hunyuan3d.
    missing = tmp_path / "hunyuan3d-vae-v2-0-turbo"
    assert api.service is not None
    args: dict[str, Any] = app_args(api.service.storage_root)
    args["pipeline"]["generators"] = {
        "hunyuan3d": {"model_path": str(tiny_hunyuan3d), "device": "cpu", "vae_path": str(missing)}
    }
    args["registry"] = {"name": "job_registry_generators"}
    deploy(args, name=APP, route_prefix=PREFIX)

    def reported() -> dict[str, Any] | None:
        body = dict(api.client.get("/api/health").json())
        check = body["checks"].get("generator:hunyuan3d", {})
        return body if str(missing) in str(check.get("detail")) else None

    body = wait_until(reported, 120, "the missing VAE directory in readiness")
    check = body["checks"]["generator:hunyuan3d"]
    assert not check["ok"] and f"VAE directory {missing} does not exist" in check["detail"]
    assert body["checks"]["generator:inflate"]["ok"]
