"""The seed HTTP contract over real Ray Serve: health, upload, generate, status, download."""

from __future__ import annotations

import asyncio
import io
import re
import zipfile

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.client import Api
from tests.formats import lib3mf_model, only_mesh, open_usdz, usd_errors
from tests.gltf_validator import validate_glb

pytestmark = pytest.mark.integration

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
#: Every format a job's model downloads as, with its media type.
MEDIA_TYPES = {
    "glb": "model/gltf-binary",
    "obj": "application/zip",
    "stl": "model/stl",
    "ply": "application/ply",
    "3mf": "model/3mf",
    "usdz": "model/vnd.usdz+zip",
}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    """An error answer: the status, the ``{"error": {"code", "message"}}`` body, no traceback."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    if code is not None:
        assert error["code"] == code
    assert "Traceback" not in response.text


def test_health_is_ok(api: Api) -> None:
    response = api.client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_checks_registry_storage_models_and_deployments(api: Api) -> None:
    response = api.client.get("/api/health")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    for check in ("registry", "storage", "background_model", "generator:inflate"):
        assert body["checks"][check]["ok"], body
    deployments = {k for k in body["checks"] if k.startswith("deployment:")}
    assert deployments == {
        "deployment:Ingress",
        "deployment:BackgroundRemoval",
        "deployment:ShapeTexture",
        "deployment:MeshTools",
    }


def test_openapi_spec_lists_the_seed_routes(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    for path in (
        "/health",
        "/api/health",
        "/api/upload-image",
        "/api/generate-3d",
        "/api/job-status/{job_id}",
        "/download/{job_id}/{format}",
        "/api/jobs",
    ):
        assert path in paths


def test_upload_returns_a_new_job_id_in_uploaded_state(api: Api) -> None:
    data = api.photo("astronaut")
    response = api.client.post("/api/upload-image", files={"image": ("a.jpg", data, "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert JOB_ID.fullmatch(body["job_id"])
    assert body["status"] == "uploaded"
    assert body["media_type"] == "image/jpeg"
    assert body["size_bytes"] == len(data)
    assert api.status(body["job_id"])["status"] == "uploaded"


def test_upload_is_stored_by_content_hash_not_by_filename(api: Api) -> None:
    data = api.unique_photo()
    job_id = api.upload(data, filename="../../evil name.png")
    sha = api.client.get(f"/api/job-status/{job_id}").json()
    assert sha["status"] == "uploaded"
    root = api.service.storage_root
    names = [p.name for p in root.rglob("*")]
    assert not any("evil" in name for name in names)
    assert any(p.read_bytes() == data for p in (root / "uploads").rglob("*") if p.is_file())
    assert (root / "jobs" / job_id / "upload.json").is_file()


def test_upload_of_a_non_image_is_415(api: Api) -> None:
    response = api.client.post(
        "/api/upload-image", files={"image": ("notes.txt", b"just some text", "text/plain")}
    )
    assert_error(response, 415, "unsupported_media_type")


def test_upload_of_an_empty_file_is_400(api: Api) -> None:
    response = api.client.post("/api/upload-image", files={"image": ("e.png", b"", "image/png")})
    assert_error(response, 400)


def test_upload_without_the_image_field_is_422(api: Api) -> None:
    response = api.client.post("/api/upload-image", files={"photo": ("a.png", b"x", "image/png")})
    assert_error(response, 422, "validation_error")


def test_generate_stl_then_download_every_format_of_the_same_job(api: Api, tmp_path) -> None:
    job_id = api.upload(api.unique_photo())
    response = api.generate(job_id, format="stl", quality=3)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    job = api.wait(job_id)
    assert job["status"] == "completed", job
    assert job["progress"] == 100.0
    assert job["download_url"] == f"/download/{job_id}/stl"
    assert set(job["outputs"]) == set(MEDIA_TYPES)

    files = {}
    for fmt, media_type in MEDIA_TYPES.items():
        response = api.client.get(f"/download/{job_id}/{fmt}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == media_type
        disposition = response.headers["content-disposition"]
        assert "attachment" in disposition and f"{job_id}_model" in disposition
        files[fmt] = response.content

    stl = trimesh.load(io.BytesIO(files["stl"]), file_type="stl")
    assert len(stl.faces) > 0 and (stl.extents > 0).all()
    ply = trimesh.load(io.BytesIO(files["ply"]), file_type="ply", process=False)
    glb = trimesh.load(io.BytesIO(files["glb"]), file_type="glb", force="mesh")
    assert len(ply.faces) == len(stl.faces) == len(glb.faces)
    # GLB is in metres, the others in millimetres: the same model, scaled.
    np.testing.assert_allclose(glb.extents * 1000.0, ply.extents, rtol=1e-3)
    with zipfile.ZipFile(io.BytesIO(files["obj"])) as z:
        names = set(z.namelist())
    assert "model.obj" in names and any(n.endswith(".mtl") for n in names)
    assert any(n.endswith((".png", ".jpg", ".jpeg")) for n in names)
    # 3MF in millimetres (Z up), read by lib3mf; USDZ passes USD's validators.
    printed = only_mesh(lib3mf_model(files["3mf"], tmp_path))
    assert printed.GetTriangleCount() == len(stl.faces)
    points = np.array([v.Coordinates[:] for v in printed.GetVertices()])
    np.testing.assert_allclose(np.ptp(points, axis=0), ply.extents[[0, 2, 1]], rtol=1e-3)
    stage = open_usdz(files["usdz"], tmp_path)
    assert usd_errors(stage) == []
    assert len(stage.GetPrimAtPath("/Model/Mesh").GetAttribute("points").Get()) == len(ply.vertices)
    # A second download of a derived format is the same file, not a new conversion.
    assert api.client.get(f"/download/{job_id}/glb").content == files["glb"]


def test_generate_honours_requested_dimensions(api: Api) -> None:
    job_id = api.upload(api.unique_photo())
    response = api.generate(job_id, format="stl", quality=1, dimensions={"width": 80.0})
    assert response.status_code == 202, response.text
    assert api.wait(job_id)["status"] == "completed"
    mesh = trimesh.load(io.BytesIO(api.client.get(f"/download/{job_id}/stl").content), "stl")
    assert mesh.extents[0] == pytest.approx(80.0, rel=1e-3)


@pytest.mark.parametrize(
    "body",
    [
        {"format": "fbx"},
        {"quality": 0},
        {"quality": 11},
        {"quality": "high"},
        {"dimensions": {"width": -1}},
        {"dimensions": {"width": 1e9}},
        {"colour": "red"},
    ],
)
def test_generate_with_an_invalid_body_is_422(api: Api, body: dict[str, object]) -> None:
    job_id = api.upload(api.photo())
    assert_error(api.generate(job_id, **body), 422, "validation_error")
    assert api.status(job_id)["status"] == "uploaded"


def test_unknown_job_id_is_404_everywhere(api: Api) -> None:
    unknown = "0123456789abcdef0123456789abcdef"
    assert_error(api.generate(unknown), 404, "job_not_found")
    assert_error(api.client.get(f"/api/job-status/{unknown}"), 404, "job_not_found")
    assert_error(api.client.get(f"/download/{unknown}/glb"), 404, "job_not_found")


MALFORMED_IDS = [
    "abc",
    "0123456789ABCDEF0123456789ABCDEF",
    "0123456789abcdef0123456789abcdeg",
    "0123456789abcdef0123456789abcde",
    "0123456789abcdef0123456789abcdef0",
    "01234567-89ab-cdef-0123-456789abcdef",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "0123456789abcdef0123456789abcde%00",
]


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
def test_malformed_job_ids_are_rejected_before_storage(api: Api, bad_id: str) -> None:
    for response in (
        api.client.get(f"/api/job-status/{bad_id}"),
        api.client.get(f"/download/{bad_id}/glb"),
    ):
        assert response.status_code in (404, 422), response.text
        assert_error(response, response.status_code)
    assert_error(api.generate(bad_id), 422, "validation_error")
    jobs_dir = api.service.storage_root / "jobs"
    assert all(JOB_ID.fullmatch(p.name) for p in jobs_dir.iterdir())


def test_download_with_an_unknown_format_is_422(api: Api) -> None:
    job_id = api.upload(api.photo())
    assert_error(api.client.get(f"/download/{job_id}/fbx"), 422, "validation_error")


def test_download_before_completion_is_409(api: Api) -> None:
    job_id = api.upload(api.photo())
    assert_error(api.client.get(f"/download/{job_id}/glb"), 409, "job_conflict")


def test_unknown_route_is_404_in_the_error_shape(api: Api) -> None:
    assert_error(api.client.get("/api/nothing-here"), 404, "not_found")


def test_a_photo_without_a_subject_fails_the_job_with_a_clear_error(api: Api) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (128, 128, 128)).save(buf, format="PNG")
    job_id = api.upload(buf.getvalue())
    assert api.generate(job_id).status_code == 202
    job = api.wait(job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "no_subject"
    assert "Traceback" not in str(job["error"])


def test_jobs_list_is_paged_newest_first(api: Api) -> None:
    ids = [api.upload(api.photo()) for _ in range(3)]
    page = api.client.get("/api/jobs", params={"limit": 2}).json()
    assert [job["job_id"] for job in page["jobs"]] == ids[::-1][:2]
    assert page["total"] >= 3 and page["limit"] == 2 and page["offset"] == 0
    second = api.client.get("/api/jobs", params={"limit": 1, "offset": 2}).json()
    assert second["jobs"][0]["job_id"] == ids[0]
    only_uploaded = api.client.get("/api/jobs", params={"status": "uploaded", "limit": 100})
    assert all(job["status"] == "uploaded" for job in only_uploaded.json()["jobs"])
    assert_error(api.client.get("/api/jobs", params={"limit": 0}), 422)


def test_ten_concurrent_uploads_get_ten_distinct_jobs(api: Api) -> None:
    data = api.photo("coffee")

    async def upload_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=api.service.url, timeout=60) as client:
            files = {"image": ("c.jpg", data, "image/jpeg")}
            return await asyncio.gather(
                *(client.post("/api/upload-image", files=files) for _ in range(10))
            )

    responses = asyncio.run(upload_all())
    assert [r.status_code for r in responses] == [200] * 10
    bodies = [r.json() for r in responses]
    assert len({b["job_id"] for b in bodies}) == 10
    assert len({b["sha256"] for b in bodies}) == 1


def test_fifty_concurrent_health_checks_all_pass(api: Api) -> None:
    async def check_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=api.service.url, timeout=30, limits=limits) as c:
            return await asyncio.gather(*(c.get("/health") for _ in range(50)))

    responses = asyncio.run(check_all())
    assert [r.status_code for r in responses] == [200] * 50


def test_a_photo_with_views_runs_with_every_view_cut_out(api: Api) -> None:
    """Views of a subject: listed with their hashes, cut out with the photo, and the run's
    model keyed by them (the same photo without them is another model)."""
    front, left, back = api.unique_photo(), api.photo("coffee", "PNG"), api.photo("rocket", "PNG")
    files = [
        ("image", ("front.jpg", front, "image/jpeg")),
        ("left", ("left.png", left, "image/png")),
        ("back", ("back.png", back, "image/png")),
    ]
    answer = api.client.post("/api/upload-image", files=files)
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["job_id"]
    assert [v["view"] for v in answer.json()["views"]] == ["front", "left", "back"]
    assert api.generate(job_id, format="glb", quality=2).status_code == 202
    job = api.wait(job_id)
    assert job["status"] == "completed", job
    assert [v["view"] for v in job["views"]] == ["front", "left", "back"]
    glb = api.client.get(f"/download/{job_id}/glb").content
    assert validate_glb(glb)["numErrors"] == 0
    single = api.upload(front)
    assert api.generate(single, format="glb", quality=2).status_code == 202
    alone = api.wait(single)
    assert alone["status"] == "completed" and alone["cached"] is False


def test_a_view_that_is_not_an_image_is_refused_with_its_name(api: Api) -> None:
    files = [
        ("image", ("front.jpg", api.photo(), "image/jpeg")),
        ("right", ("right.png", b"plain text, no picture", "image/png")),
    ]
    answer = api.client.post("/api/upload-image", files=files)
    assert_error(answer, 415)
    assert "right" in answer.json()["error"]["message"]


def test_texture_mesh_textures_an_uploaded_mesh_in_every_format(api: Api) -> None:
    """An STL and two photos → a job whose model keeps the STL's geometry, downloadable in
    every format (GLB valid), cached for the same request, cancellable like any job."""
    ball = trimesh.creation.icosphere(subdivisions=3, radius=20.0)
    ball.apply_translation([0.0, 25.0, 0.0])
    stl = ball.export(file_type="stl")
    files = [
        ("mesh", ("ball.stl", stl, "model/stl")),
        ("front", ("front.jpg", api.unique_photo(), "image/jpeg")),
        ("left", ("left.png", api.photo("coffee", "PNG"), "image/png")),
    ]
    params = {"params": '{"format": "ply", "quality": 3}'}
    answer = api.client.post("/api/texture-mesh", files=files, data=params)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    job = api.wait(job_id)
    assert job["status"] == "completed", job
    assert job["generator"] == "given_mesh" and job["format"] == "ply"
    assert [v["view"] for v in job["views"]] == ["front", "left"]
    downloads = {f: api.client.get(f"/download/{job_id}/{f}") for f in ("glb", "obj", "stl", "ply")}
    assert all(r.status_code == 200 for r in downloads.values())
    assert validate_glb(downloads["glb"].content)["numErrors"] == 0
    ply = trimesh.load(io.BytesIO(downloads["ply"].content), file_type="ply", process=False)
    np.testing.assert_allclose(ply.bounds, ball.bounds, atol=1e-3)  # millimetres, as sent
    glb = trimesh.load(io.BytesIO(downloads["glb"].content), file_type="glb", force="mesh")
    np.testing.assert_allclose(glb.bounds * 1000.0, ball.bounds, atol=1e-2)  # metres
    assert len(ply.faces) == len(ball.faces)
    # The same request again is a new job completed from the cache.
    again = api.client.post("/api/texture-mesh", files=files, data=params)
    assert again.status_code == 202, again.text
    assert api.wait(again.json()["job_id"])["cached"] is True
    # Re-running the job keeps texturing its mesh.
    assert api.generate(job_id, format="stl", quality=2).status_code == 202
    rerun = api.wait(job_id)
    assert rerun["status"] == "completed" and rerun["generator"] == "given_mesh"
