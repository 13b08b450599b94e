"""Mesh tools over HTTP: analyze-stl on files and on a job's model, materials, hostile files."""

from __future__ import annotations

import struct
from typing import Any

import httpx
import pytest

from tests.client import Api
from tests.meshes import binary_stl, cube, open_cube, two_cubes
from tests.support import photo_bytes

pytestmark = pytest.mark.integration

MB = 1024 * 1024
MESH_LIMIT = 64 * MB  # mesh_tools.max_upload_bytes by default


def analyze(api: Api, data: bytes, filename: str = "model.bin") -> httpx.Response:
    return api.client.post(
        "/api/analyze-stl", files={"file": (filename, data, "application/octet-stream")}
    )


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message"}
    return dict(error)


def test_a_cube_file_gets_the_known_answers(api: Api) -> None:
    response = analyze(api, binary_stl(*cube()), "cube.png")  # the name is not believed
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["format"] == "stl"
    assert body["triangles"] == 12 and body["vertices"] == 8
    assert body["bounding_box_mm"] == pytest.approx({"x": 10.0, "y": 10.0, "z": 10.0})
    assert body["volume_mm3"] == pytest.approx(1000.0)
    assert body["surface_area_mm2"] == pytest.approx(600.0)
    assert body["watertight"] and body["winding_consistent"] and body["printable"]
    assert body["issues"] == []

    open_body = analyze(api, binary_stl(*open_cube())).json()
    assert open_body["boundary_edges"] == 4 and not open_body["printable"]
    assert [i["code"] for i in open_body["issues"]] == ["open_surface"]
    assert analyze(api, binary_stl(*two_cubes())).json()["components"] == 2


def test_a_completed_jobs_model_is_analysed_by_its_id(api: Api) -> None:
    job_id = api.upload(photo_bytes("coffee"))
    early = api.client.post("/api/analyze-stl", json={"job_id": job_id})
    assert error_of(early, 409)["code"] == "job_conflict"
    assert api.generate(job_id, format="stl", quality=1).status_code == 202
    assert api.wait(job_id)["status"] == "completed"

    response = api.client.post("/api/analyze-stl", json={"job_id": job_id})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["format"] == "canonical" and body["printable"], body
    assert body["volume_mm3"] > 0
    assert max(body["bounding_box_mm"].values()) == pytest.approx(100.0, rel=1e-3)
    stl = api.client.get(f"/download/{job_id}/stl").content
    from_file = analyze(api, stl).json()
    assert from_file["volume_mm3"] == pytest.approx(body["volume_mm3"], rel=1e-5)

    variant = api.client.post("/api/analyze-stl", json={"job_id": job_id, "variant": "e" * 64})
    error = error_of(variant, 404)
    assert error["code"] == "variant_not_found" and "e" * 64 in error["message"]


@pytest.mark.parametrize(
    ("name", "send", "status", "code"),
    [
        ("a photo", lambda a: analyze(a, photo_bytes("coffee")), 415, "unsupported_media_type"),
        ("text", lambda a: analyze(a, b"hello, not a mesh\n"), 415, "unsupported_media_type"),
        (
            "stl claiming a billion triangles",
            lambda a: analyze(a, binary_stl(*cube())[:80] + struct.pack("<I", 10**9) + b"\0" * 600),
            400,
            "invalid_mesh",
        ),
        ("empty file", lambda a: analyze(a, b""), 400, "invalid_mesh"),
        (
            "plain text body",
            lambda a: a.client.post(
                "/api/analyze-stl", content=b"x", headers={"Content-Type": "text/plain"}
            ),
            415,
            "unsupported_media_type",
        ),
        (
            "no file field",
            lambda a: a.client.post(
                "/api/analyze-stl", data={"other": "x"}, files={"x": ("a", b"1")}
            ),
            422,
            "validation_error",
        ),
        (
            "broken json",
            lambda a: a.client.post(
                "/api/analyze-stl", content=b"{", headers={"Content-Type": "application/json"}
            ),
            400,
            "invalid_json",
        ),
        (
            "bad job id",
            lambda a: a.client.post("/api/analyze-stl", json={"job_id": "../etc"}),
            422,
            "validation_error",
        ),
        (
            "unknown job",
            lambda a: a.client.post("/api/analyze-stl", json={"job_id": "0" * 32}),
            404,
            "job_not_found",
        ),
    ],
)  # fmt: skip
def test_hostile_requests_get_their_exact_status(
    api: Api, name: str, send: Any, status: int, code: str
) -> None:
    assert error_of(send(api), status)["code"] == code


def test_a_mesh_over_the_size_limit_is_413_and_the_service_keeps_serving(api: Api) -> None:
    big = b"\0" * (MESH_LIMIT + 1)
    try:
        declared = analyze(api, big)
    except httpx.TransportError:
        pass  # the server may answer and close before the client has sent it all
    else:
        assert error_of(declared, 413)["code"] == "payload_too_large"

    def chunks() -> Any:  # no Content-Length: counted while it streams in
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.stl"\r\n\r\n'
        for _ in range(MESH_LIMIT // MB + 2):
            yield b"\0" * MB
        yield b"\r\n--b--\r\n"

    try:
        streamed = api.client.post(
            "/api/analyze-stl",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
    except httpx.TransportError:
        pass
    else:
        assert error_of(streamed, 413)["code"] == "payload_too_large"

    assert api.client.get("/health").status_code == 200
    after = analyze(api, binary_stl(*cube()))
    assert after.status_code == 200 and after.json()["volume_mm3"] == pytest.approx(1000.0)


def test_materials_lists_the_presets(api: Api) -> None:
    response = api.client.get("/api/materials")
    assert response.status_code == 200
    presets = {p["name"]: p for p in response.json()["presets"]}
    assert {"matte_plastic", "glossy_plastic", "metal", "ceramic", "wood", "rubber"} <= set(presets)
    assert presets["metal"]["metallic"] == 1.0
    assert all(0 <= p["roughness"] <= 1 for p in presets.values())


def test_the_openapi_spec_documents_the_mesh_tools_with_examples(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    analyze_op = spec["paths"]["/api/analyze-stl"]["post"]
    content = analyze_op["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(content)
    assert "example" in content["application/json"]
    assert "example" in analyze_op["responses"]["200"]["content"]["application/json"]
    assert {"413", "415"} <= set(analyze_op["responses"])
    assert set(content["application/json"]["schema"]["properties"]) == {"job_id", "variant"}
    materials = spec["paths"]["/api/materials"]["get"]
    assert "example" in materials["responses"]["200"]["content"]["application/json"]
