"""Variants, previews, thumbnails and batches over real Ray Serve: the MeshTools deployment,
the registry that makes each variant once, and the studio's recent jobs' pictures."""

from __future__ import annotations

import asyncio
import io
import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.client import Api, photo
from tests.gltf_validator import validate_glb

pytestmark = pytest.mark.integration

UNKNOWN = "variant_not_found"
RED = {"base_color": "#c0392b", "metallic": 0.0, "roughness": 0.7}


@pytest.fixture(scope="module")
def job_id(api: Api) -> str:
    """A completed job (a real photo, inflate at quality 1)."""
    job_id = api.upload(photo("coffee", size=200, unique=True))
    assert api.generate(job_id, format="glb", quality=1).status_code == 202
    assert api.wait(job_id)["status"] == "completed"
    return job_id


@pytest.fixture(scope="module")
def other_job(api: Api) -> Iterator[str]:
    job_id = api.upload(photo("rocket", size=160, unique=True))
    assert api.generate(job_id, format="stl", quality=1).status_code == 202
    assert api.wait(job_id)["status"] == "completed"
    yield job_id


def gltf_json(glb: bytes) -> dict[str, Any]:
    length = struct.unpack_from("<I", glb, 12)[0]
    return dict(json.loads(glb[20 : 20 + length]))


def test_optimize_keeps_the_model_closed_and_meets_the_target(api: Api, job_id: str) -> None:
    response = api.client.post("/api/optimize-mesh", json={"job_id": job_id, "target_faces": 800})
    assert response.status_code == 200, response.text
    made = response.json()
    assert made["watertight"] is True and 700 <= made["faces"] <= 800
    status = api.status(job_id)
    assert made["variant_id"] in [v["variant_id"] for v in status["variants"]]

    stl = api.client.get(made["downloads"]["stl"])
    assert stl.status_code == 200
    mesh = trimesh.load(io.BytesIO(stl.content), file_type="stl")
    assert len(mesh.faces) == made["faces"] and mesh.is_watertight and mesh.volume > 0
    analysis = api.client.post(
        "/api/analyze-stl", json={"job_id": job_id, "variant": made["variant_id"]}
    ).json()
    assert analysis["printable"] and analysis["triangles"] == made["faces"]


def test_identical_requests_at_once_make_one_variant(api: Api, job_id: str) -> None:
    body = {"job_id": job_id, "target_faces": 600, "repair": True}

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=api.client.base_url, timeout=120) as client:
            return await asyncio.gather(
                *(client.post("/api/optimize-mesh", json=body) for _ in range(6))
            )

    answers = asyncio.run(together())
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert len({a.json()["variant_id"] for a in answers}) == 1
    vid = answers[0].json()["variant_id"]
    log = api.client.get(f"/api/jobs/{job_id}/logs").json()["entries"]
    made = [e for e in log if e["event"] == "variant" and vid[:12] in e["message"]]
    assert len(made) == 1, made


def test_a_material_on_a_variant_reaches_a_valid_glb(api: Api, job_id: str) -> None:
    light = api.client.post("/api/optimize-mesh", json={"job_id": job_id, "target_faces": 900})
    base = light.json()["variant_id"]
    metal = api.client.post(
        "/api/apply-material", json={"job_id": job_id, "variant": base, "material": "metal"}
    )
    assert metal.status_code == 200, metal.text
    made = metal.json()
    assert made["base"] == base and made["faces"] == light.json()["faces"]
    glb = api.client.get(made["downloads"]["glb"]).content
    material = gltf_json(glb)["materials"][0]
    assert material["pbrMetallicRoughness"]["metallicFactor"] == 1.0
    assert "baseColorTexture" in material["pbrMetallicRoughness"]  # a preset keeps it
    report = validate_glb(glb)
    assert report["numErrors"] == 0, report["messages"]
    obj = api.client.get(made["downloads"]["obj"])
    assert obj.status_code == 200 and obj.headers["content-type"] == "application/zip"


def test_a_preview_shows_the_model_in_its_colour(api: Api, job_id: str) -> None:
    red = api.client.post("/api/apply-material", json={"job_id": job_id, "material": RED})
    assert red.status_code == 200, red.text
    body = {
        "job_id": job_id, "variant": red.json()["variant_id"], "width": 256, "height": 192,
        "azimuth_deg": 20, "elevation_deg": 15, "background": "#ffffff",
    }  # fmt: skip
    response = api.client.post("/api/preview-3d", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(float)
    assert image.shape == (192, 256, 3)
    assert (image[0, 0] == 255).all()  # the background
    assert (image != 255).any(axis=2).mean() > 0.1  # not blank
    centre = image[86:106, 118:138].reshape(-1, 3).mean(axis=0)
    assert centre[0] > 100 and centre[0] > 1.5 * max(centre[1], centre[2]), centre

    thumb = api.client.get(f"/api/jobs/{job_id}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    picture = np.asarray(Image.open(io.BytesIO(thumb.content)))
    assert picture.shape == (256, 256, 4) and picture[0, 0, 3] == 0
    assert (picture[..., 3] == 255).mean() > 0.1
    again = api.client.get(
        f"/api/jobs/{job_id}/thumbnail", headers={"If-None-Match": thumb.headers["etag"]}
    )
    assert again.status_code == 304


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/api/optimize-mesh", {"target_faces": 99}, 422, "validation_error"),
        ("/api/optimize-mesh", {"target_faces": 2_000_000}, 422, "validation_error"),
        ("/api/preview-3d", {"width": 4096}, 422, "validation_error"),
        ("/api/preview-3d", {"height": 10}, 422, "validation_error"),
        ("/api/apply-material", {"material": "unobtainium"}, 422, "validation_error"),
        ("/api/apply-material", {"material": "wood", "variant": "a" * 64}, 404, UNKNOWN),
    ],
)  # fmt: skip
def test_hostile_mesh_tool_requests_get_a_clear_4xx(
    api: Api, job_id: str, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    response = api.client.post(path, json={"job_id": job_id, **body})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert api.client.get("/health").status_code == 200


def test_a_variant_of_another_job_is_404(api: Api, job_id: str, other_job: str) -> None:
    made = api.client.post("/api/optimize-mesh", json={"job_id": job_id, "target_faces": 500})
    vid = made.json()["variant_id"]
    download = api.client.get(f"/download/{other_job}/glb", params={"variant": vid})
    assert download.status_code == 404 and download.json()["error"]["code"] == "variant_not_found"
    preview = api.client.post("/api/preview-3d", json={"job_id": other_job, "variant": vid})
    assert preview.status_code == 404
    assert api.client.get(f"/download/{job_id}/glb", params={"variant": vid}).status_code == 200


def test_a_batch_of_five_photos_completes(api: Api) -> None:
    names = ("chelsea", "coffee", "astronaut", "rocket", "cat")
    files = [("images", (f"{n}.png", photo(n, size=128, unique=True), "image/png")) for n in names]
    params = json.dumps({"format": "stl", "quality": 1})
    response = api.client.post("/api/batch-generate", files=files, data={"params": params})
    assert response.status_code == 202, response.text
    created = response.json()
    assert len(created["jobs"]) == 5 and all(j["job_id"] for j in created["jobs"])
    batch_id = created["batch_id"]

    events = []
    with api.client.stream("GET", f"/api/batches/{batch_id}/events", timeout=600) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    final = events[-1]
    assert final["status"] == "completed", final
    assert final["counts"] == {"completed": 5} and final["progress"] == 100.0
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress)
    body = api.client.get(f"/api/batches/{batch_id}").json()
    assert body == final
    stl = api.client.get(final["jobs"][0]["download_url"])
    assert stl.status_code == 200 and trimesh.load(io.BytesIO(stl.content), "stl").is_watertight
