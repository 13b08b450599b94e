"""Variants and previews of a job's model through the API, in-process: the real registry,
job view and mesh-tool work (``InProcessMeshTools``), no Ray."""

from __future__ import annotations

import asyncio
import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from PIL import Image

from serve_app.api.security import hash_key
from serve_app.contracts.variants import VariantOrder
from serve_app.meshtools.variants import VariantOperation, variant_id
from serve_app.metrics import MetricsSink
from serve_app.registry.actor import JobRegistry
from serve_app.registry.jobs import JobSnapshot
from tests.gltf_validator import validate_glb
from tests.meshes import pipeline_mesh
from tests.unit.inprocess import InProcessService, app_config, in_process_service

OWNER, OTHER = "owner-key", "other-key"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[InProcessService]:
    with in_process_service(app_config(tmp_path)) as service:
        yield service


def post(service: InProcessService, path: str, body: dict[str, Any], **kw: Any) -> Any:
    return service.http.post(path, json=body, **kw)


def optimize(service: InProcessService, job_id: str, faces: int, **extra: Any) -> Any:
    return post(service, "/api/optimize-mesh", {"job_id": job_id, "target_faces": faces, **extra})


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json()["error"])


def gltf_json(glb: bytes) -> dict[str, Any]:
    length = struct.unpack_from("<I", glb, 12)[0]
    return dict(json.loads(glb[20 : 20 + length]))


def test_optimize_makes_a_closed_lighter_variant_listed_and_downloadable(
    service: InProcessService,
) -> None:
    job_id = service.completed_job(pipeline_mesh())
    original = len(pipeline_mesh().faces)
    response = optimize(service, job_id, 2000)
    assert response.status_code == 200, response.text
    made = response.json()
    assert made["job_id"] == job_id and made["operation"] == "optimize"
    assert 1800 <= made["faces"] <= 2000 < original
    assert made["watertight"] is True
    assert made["params"] == {"target_faces": 2000, "repair": True}
    vid = made["variant_id"]
    assert made["downloads"]["stl"] == f"/download/{job_id}/stl?variant={vid}"

    listed = service.http.get(f"/api/job-status/{job_id}").json()["variants"]
    assert [v["variant_id"] for v in listed] == [vid]
    assert listed[0]["downloads"] == made["downloads"] and listed[0]["base"] is None

    stl = service.http.get(made["downloads"]["stl"])
    assert stl.status_code == 200 and vid[:12] in stl.headers["content-disposition"]
    mesh = trimesh.load(io.BytesIO(stl.content), file_type="stl")
    assert len(mesh.faces) == made["faces"] and mesh.is_watertight
    analysis = post(service, "/api/analyze-stl", {"job_id": job_id, "variant": vid}).json()
    assert analysis["triangles"] == made["faces"] and analysis["printable"]
    for fmt in ("glb", "obj", "ply"):
        assert service.http.get(made["downloads"][fmt]).status_code == 200

    again = optimize(service, job_id, 2000, repair=True)
    assert again.json()["variant_id"] == vid
    assert service.mesh_tools.variant_calls == 1  # listed already: not made again


def test_concurrent_identical_requests_make_the_variant_once(service: InProcessService) -> None:
    job_id = service.completed_job(pipeline_mesh())
    job = service.view.peek(job_id)
    assert job is not None and job.result is not None
    params = {"target_faces": 1500, "repair": True}
    key = job.result.artifact_key
    order = VariantOrder(
        job_id, variant_id(job_id, key, VariantOperation.OPTIMIZE, params), None, key,
        "optimize", params,
    )  # fmt: skip

    async def eight_at_once() -> list[JobSnapshot]:
        return list(await asyncio.gather(*(service.registry.make_variant(order) for _ in range(8))))

    answers = service.run(eight_at_once)
    assert all(isinstance(a, JobSnapshot) for a in answers)
    assert {len(a.variants) for a in answers} == {1}
    assert service.mesh_tools.variant_calls == 1


def test_materials_reach_the_glb_and_a_variant_can_be_the_base_of_another(
    service: InProcessService,
) -> None:
    job_id = service.completed_job(pipeline_mesh())
    light = optimize(service, job_id, 3000).json()["variant_id"]
    metal = post(
        service, "/api/apply-material", {"job_id": job_id, "variant": light, "material": "metal"}
    )
    assert metal.status_code == 200, metal.text
    made = metal.json()
    assert made["base"] == light and made["faces"] <= 3000
    assert made["params"] == {
        "name": "metal", "base_color": None, "metallic": 1.0, "roughness": 0.3,
    }  # fmt: skip
    glb = service.http.get(made["downloads"]["glb"]).content
    material = gltf_json(glb)["materials"][0]
    pbr = material["pbrMetallicRoughness"]
    assert material["name"] == "metal" and pbr["metallicFactor"] == 1.0
    assert pbr["roughnessFactor"] == pytest.approx(0.3) and "baseColorTexture" in pbr
    report = validate_glb(glb)
    assert report["numErrors"] == 0, report["messages"]

    red = post(
        service,
        "/api/apply-material",
        {"job_id": job_id, "material": {"base_color": "#c0392b", "metallic": 0, "roughness": 0.6}},
    ).json()
    ply = trimesh.load(io.BytesIO(service.http.get(red["downloads"]["ply"]).content), "ply")
    colours = np.asarray(ply.visual.vertex_colors)[:, :3]
    assert (colours == (0xC0, 0x39, 0x2B)).all()
    variants = service.http.get(f"/api/job-status/{job_id}").json()["variants"]
    assert [v["operation"] for v in variants] == ["optimize", "material", "material"]


def test_previews_show_the_model_and_are_rendered_once(service: InProcessService) -> None:
    job_id = service.completed_job(pipeline_mesh())
    red = post(
        service,
        "/api/apply-material",
        {"job_id": job_id, "material": {"base_color": "#c0392b", "metallic": 0, "roughness": 0.7}},
    ).json()["variant_id"]
    body = {
        "job_id": job_id, "variant": red, "width": 320, "height": 240,
        "azimuth_deg": 30, "elevation_deg": 20, "background": "#203040",
    }  # fmt: skip
    response = post(service, "/api/preview-3d", body)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(response.content)))
    assert image.shape == (240, 320, 3)
    assert tuple(image[0, 0]) == (0x20, 0x30, 0x40)  # the asked background
    centre = image[110:130, 150:170].reshape(-1, 3).mean(axis=0)
    assert centre[0] > 100 and centre[0] > 1.5 * max(centre[1], centre[2])  # the model's red
    assert post(service, "/api/preview-3d", body).content == response.content
    assert service.mesh_tools.render_calls == 1  # the second came from the store

    thumb = service.http.get(f"/api/jobs/{job_id}/thumbnail")
    assert thumb.status_code == 200, thumb.text
    picture = np.asarray(Image.open(io.BytesIO(thumb.content)))
    assert picture.shape == (256, 256, 4)
    assert picture[0, 0, 3] == 0 and picture[128, 128, 3] == 255  # transparent off the model
    assert picture[..., :3][picture[..., 3] == 255].std(axis=0).mean() > 10  # its texture
    etag = thumb.headers["etag"]
    cached = service.http.get(f"/api/jobs/{job_id}/thumbnail", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    status = service.http.get(f"/api/job-status/{job_id}").json()
    assert status["thumbnail_url"] == f"/api/jobs/{job_id}/thumbnail"


OPT, MAT, PRE = "/api/optimize-mesh", "/api/apply-material", "/api/preview-3d"
BAD, UNKNOWN = "validation_error", "variant_not_found"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        (OPT, {"target_faces": 99}, 422, BAD),
        (OPT, {"target_faces": 1_000_001}, 422, BAD),
        (OPT, {"target_faces": "many"}, 422, BAD),
        (OPT, {"target_faces": 500, "variant": "x"}, 422, BAD),
        (OPT, {"target_faces": 500, "variant": "e" * 64}, 404, UNKNOWN),
        (OPT, {"target_faces": 500, "extra": 1}, 422, BAD),
        (MAT, {"material": "gold leaf"}, 422, BAD),
        (MAT, {"material": {"metallic": 1.5, "roughness": 0}}, 422, BAD),
        (MAT, {"material": {"base_color": "red", "metallic": 0, "roughness": 0}}, 422, BAD),
        (PRE, {"width": 63}, 422, BAD),
        (PRE, {"height": 2049}, 422, BAD),
        (PRE, {"elevation_deg": 91}, 422, BAD),
        (PRE, {"background": "red"}, 422, BAD),
        (PRE, {"variant": "f" * 64}, 404, UNKNOWN),
    ],
)  # fmt: skip
def test_bad_requests_get_a_clear_4xx(
    service: InProcessService, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    job_id = service.completed_job()
    error = error_of(post(service, path, {"job_id": job_id, **body}), status)
    assert error["code"] == code
    assert service.http.get("/health").status_code == 200


def test_a_nan_angle_is_422(service: InProcessService) -> None:
    job_id = service.completed_job()
    body = f'{{"job_id": "{job_id}", "azimuth_deg": NaN}}'
    response = service.http.post(
        "/api/preview-3d", content=body, headers={"Content-Type": "application/json"}
    )
    assert error_of(response, 422)["code"] == "validation_error"


def test_a_variant_of_another_job_is_404_everywhere(service: InProcessService) -> None:
    first = service.completed_job(pipeline_mesh(), name="chelsea")
    second = service.completed_job(name="astronaut")
    vid = optimize(service, first, 1000).json()["variant_id"]
    for response in (
        service.http.get(f"/download/{second}/stl", params={"variant": vid}),
        optimize(service, second, 500, variant=vid),
        post(service, "/api/preview-3d", {"job_id": second, "variant": vid}),
        post(service, "/api/analyze-stl", {"job_id": second, "variant": vid}),
    ):
        assert error_of(response, 404)["code"] == "variant_not_found"
    bad = service.http.get(f"/download/{second}/stl", params={"variant": "no"})
    assert error_of(bad, 422)["code"] == "validation_error"


def test_a_job_not_completed_is_409_and_a_new_run_clears_its_variants(
    service: InProcessService,
) -> None:
    job_id = service.upload(name="coffee")
    for response in (
        optimize(service, job_id, 500),
        post(service, "/api/apply-material", {"job_id": job_id, "material": "wood"}),
        post(service, "/api/preview-3d", {"job_id": job_id}),
        service.http.get(f"/api/jobs/{job_id}/thumbnail"),
    ):
        assert error_of(response, 409)["code"] == "job_conflict"
    service.complete_from_cache(job_id, quality=2, mesh=pipeline_mesh())
    assert (
        service.http.post("/api/generate-3d", json={"job_id": job_id, "quality": 2}).status_code
        == 202
    )
    service.wait_view(lambda: getattr(service.view.peek(job_id), "status", None) == "completed")
    assert optimize(service, job_id, 800).status_code == 200
    assert len(service.http.get(f"/api/job-status/{job_id}").json()["variants"]) == 1

    assert (
        service.http.post("/api/generate-3d", json={"job_id": job_id, "quality": 2}).status_code
        == 202
    )
    service.wait_view(
        lambda: (
            getattr(service.view.peek(job_id), "run", 0) == 2
            and getattr(service.view.peek(job_id), "status", None) == "completed"
        )
    )
    assert service.http.get(f"/api/job-status/{job_id}").json()["variants"] == []


def test_variants_per_job_are_bounded(tmp_path: Path) -> None:
    config = app_config(tmp_path, mesh_tools={"max_variants_per_job": 2})
    with in_process_service(config) as service:
        job_id = service.completed_job(pipeline_mesh())
        for material in ("wood", "metal"):
            response = post(
                service, "/api/apply-material", {"job_id": job_id, "material": material}
            )
            assert response.status_code == 200
        third = post(service, "/api/apply-material", {"job_id": job_id, "material": "rubber"})
        error = error_of(third, 409)
        assert error["code"] == "variant_limit" and error["limit"] == 2
        again = post(service, "/api/apply-material", {"job_id": job_id, "material": "wood"})
        assert again.status_code == 200  # one it has is still answered


def test_work_over_its_time_is_stopped_with_a_retryable_503(tmp_path: Path) -> None:
    config = app_config(tmp_path, mesh_tools={"timeout_s": 0.001})
    with in_process_service(config) as service:
        job_id = service.completed_job(pipeline_mesh())
        response = optimize(service, job_id, 1200)
        error = error_of(response, 503)
        assert error["code"] == "timed_out" and int(response.headers["Retry-After"]) >= 1
        assert service.mesh_tools.child.starts == 1  # its child was stopped: the next starts anew
        assert service.http.get("/health").status_code == 200
        assert service.http.get(f"/api/job-status/{job_id}").json()["variants"] == []


def test_variants_survive_a_registry_restart(tmp_path: Path) -> None:
    config = app_config(tmp_path)
    with in_process_service(config) as service:
        job_id = service.completed_job(pipeline_mesh())
        vid = optimize(service, job_id, 1000).json()["variant_id"]

    async def restarted() -> JobSnapshot | Exception:
        registry = JobRegistry(config, MetricsSink())
        try:
            return await registry.get(job_id)
        finally:
            await registry.stop()

    job = asyncio.run(restarted())
    assert isinstance(job, JobSnapshot)
    assert [v.variant_id for v in job.variants] == [vid]
    assert job.variants[0].faces <= 1000 and job.variants[0].watertight


def test_with_keys_another_keys_job_is_404_for_the_mesh_tools(tmp_path: Path) -> None:
    security = {"api_key_hashes": [hash_key(OWNER), hash_key(OTHER)]}
    with in_process_service(app_config(tmp_path, security=security)) as service:
        owner = {"Authorization": f"Bearer {OWNER}"}
        other = {"Authorization": f"Bearer {OTHER}"}
        job_id = service.completed_job(headers=owner)
        made = optimize(service, job_id, 100, **{})
        assert made.status_code == 401
        for response in (
            post(
                service,
                "/api/optimize-mesh",
                {"job_id": job_id, "target_faces": 100},
                headers=other,
            ),
            post(
                service,
                "/api/apply-material",
                {"job_id": job_id, "material": "wood"},
                headers=other,
            ),
            post(service, "/api/preview-3d", {"job_id": job_id}, headers=other),
            service.http.get(f"/api/jobs/{job_id}/thumbnail", headers=other),
        ):
            assert error_of(response, 404)["code"] == "job_not_found"
        mine = post(
            service, "/api/apply-material", {"job_id": job_id, "material": "wood"}, headers=owner
        )
        assert mine.status_code == 200, mine.text
