"""The OpenAPI spec documents the mesh tools and batches, each with an example."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.inprocess import app_config, in_process_service


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    with in_process_service(app_config(tmp_path_factory.mktemp("spec"))) as service:
        return dict(service.http.get("/openapi.json").json())


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/api/optimize-mesh", "application/json"),
        ("/api/apply-material", "application/json"),
        ("/api/preview-3d", "application/json"),
        ("/api/batch-generate", "application/json"),
        ("/api/batch-generate", "multipart/form-data"),
    ],
)
def test_each_new_operation_has_a_request_example(
    spec: dict[str, Any], path: str, content: str
) -> None:
    operation = spec["paths"][path]["post"]
    body = operation["requestBody"]["content"][content]
    assert "example" in body or "example" in body["schema"]["properties"]["params"]
    assert operation["description"], path


def test_answers_are_documented_with_examples_and_errors(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    for path in ("/api/optimize-mesh", "/api/apply-material"):
        responses = paths[path]["post"]["responses"]
        assert "example" in responses["200"]["content"]["application/json"]
        assert {"404", "409", "422", "503"} <= set(responses)
    assert (
        "example"
        in paths["/api/batch-generate"]["post"]["responses"]["202"]["content"]["application/json"]
    )
    assert "image/png" in paths["/api/preview-3d"]["post"]["responses"]["200"]["content"]
    thumbnail = paths["/api/jobs/{job_id}/thumbnail"]["get"]["responses"]
    assert "image/png" in thumbnail["200"]["content"] and "304" in thumbnail
    assert {"/api/batches/{batch_id}", "/api/batches/{batch_id}/events"} <= set(paths)
    download = paths["/download/{job_id}/{format}"]["get"]
    assert "variant" in {p["name"] for p in download["parameters"]}
    status = spec["components"]["schemas"]["JobStatusResponse"]["properties"]
    assert {"variants", "thumbnail_url"} <= set(status)
