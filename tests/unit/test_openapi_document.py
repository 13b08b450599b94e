"""The OpenAPI document says what the service accepts: every reference resolves, and the
bodies the service refuses are invalid by the document too."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from serve_app.meshtools.materials import PRESETS
from tests.unit.inprocess import app_config, in_process_service

JOB = "3f2a9c0e5b7d4e1f8a6c2b9d0e4f7a1c"
BASE = "urn:orfeas:openapi"


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    with in_process_service(app_config(tmp_path_factory.mktemp("spec"))) as service:
        return dict(service.http.get("/openapi.json").json())


def pointer(*parts: str) -> str:
    """A JSON pointer fragment of ``parts`` (``/`` and ``~`` escaped)."""
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(document: dict[str, Any], ref: str) -> Any:
    """What a local ``$ref`` (``#/a/b``) points at; KeyError when it points at nothing."""
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def validator(spec: dict[str, Any], ref: str) -> Draft202012Validator:
    """A JSON Schema validator of the schema at ``ref``, its references read in ``spec``."""
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    registry: Registry = Registry().with_resource(BASE, resource)
    return Draft202012Validator({"$ref": BASE + ref}, registry=registry)


def body_schema(path: str, media_type: str = "application/json") -> str:
    return pointer("paths", path, "post", "requestBody", "content", media_type, "schema")


def test_every_ref_in_the_document_resolves(spec: dict[str, Any]) -> None:
    found = refs(spec)
    assert len(found) > 50
    unresolved = []
    for ref in sorted(set(found)):
        try:
            resolve(spec, ref)
        except (KeyError, IndexError, ValueError, AssertionError):
            unresolved.append(ref)
    assert unresolved == []
    assert "$defs" not in str(spec)


def test_every_request_example_is_valid_by_its_own_schema(spec: dict[str, Any]) -> None:
    checked = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            for media_type, media in content.items():
                if "example" in media and media_type == "application/json":
                    where = pointer("paths", path, method, "requestBody", "content", media_type)
                    errors = list(validator(spec, where + "/schema").iter_errors(media["example"]))
                    assert errors == [], (path, [e.message for e in errors])
                    checked.append(path)
    assert {"/api/batch-generate", "/api/apply-material", "/api/analyze-stl"} <= set(checked)


def test_batch_generate_as_json_requires_job_ids_and_checks_its_options(
    spec: dict[str, Any],
) -> None:
    body = validator(spec, body_schema("/api/batch-generate"))
    assert body.is_valid({"job_ids": [JOB], "params": {"format": "3mf", "quality": 3}})
    assert body.is_valid({"job_ids": [JOB], "params": {"dimensions": {"width": 80}}})
    assert not body.is_valid({"params": {"format": "glb"}})  # no job_ids
    assert not body.is_valid({"job_ids": [JOB], "params": {"quality": 11}})
    assert not body.is_valid({"job_ids": [JOB], "params": {"dimensions": {"width": -1}}})
    assert not body.is_valid({"job_ids": [JOB], "params": {"generator": "nope"}})


def test_upload_image_declares_a_non_empty_picture(spec: dict[str, Any]) -> None:
    media = resolve(spec, pointer("paths", "/api/upload-image", "post", "requestBody"))
    multipart = media["content"]["multipart/form-data"]
    image = resolve(spec, multipart["schema"]["$ref"])["properties"]["image"]
    assert image["minLength"] == 1
    assert multipart["encoding"]["image"]["contentType"] == "image/png, image/jpeg, image/webp"
    responses = spec["paths"]["/api/upload-image"]["post"]["responses"]
    assert {"400", "413", "415"} <= set(responses)


def test_generate_3d_accepts_only_the_enabled_generators(spec: dict[str, Any]) -> None:
    body = validator(spec, pointer("components", "schemas", "GenerateRequest"))
    assert body.is_valid({"job_id": JOB, "generator": "inflate"})
    assert body.is_valid({"job_id": JOB, "generator": None})
    assert not body.is_valid({"job_id": JOB, "generator": "hunyuan3d"})  # not enabled here
    assert not body.is_valid({"job_id": JOB, "generator": "anything"})
    text = validator(spec, pointer("components", "schemas", "TextToImageRequest"))
    assert not text.is_valid({"prompt": "an owl", "generate_3d": {"generator": "anything"}})


def test_generator_parameters_are_accepted_only_with_a_generator_that_takes_them(
    spec: dict[str, Any],
) -> None:
    body = validator(spec, pointer("components", "schemas", "GenerateRequest"))
    assert body.is_valid({"job_id": JOB, "quality": 3, "seed": None})
    assert not body.is_valid({"job_id": JOB, "steps": 10})  # inflate alone takes none


@pytest.mark.parametrize("default", ["inflate", "hunyuan3d"])
def test_with_both_generators_a_parameter_follows_the_generator_the_request_runs(
    tmp_path: Any, default: str
) -> None:
    from fastapi.openapi.utils import get_openapi

    from serve_app.api.openapi import fix_document

    with in_process_service(app_config(tmp_path)) as service:
        app = service.http.app
        document = get_openapi(title="raw", version="0", routes=app.routes)  # type: ignore[attr-defined]
    fix_document(document, ["inflate", "hunyuan3d"], default)
    body = validator(document, pointer("components", "schemas", "GenerateRequest"))
    assert body.is_valid({"job_id": JOB, "generator": "hunyuan3d", "steps": 10, "seed": 7})
    assert not body.is_valid({"job_id": JOB, "generator": "inflate", "steps": 10})
    assert body.is_valid({"job_id": JOB, "steps": 10}) is (default == "hunyuan3d")
    assert body.is_valid({"job_id": JOB, "generator": None, "seed": 1}) is (default == "hunyuan3d")
    assert body.is_valid({"job_id": JOB, "generator": "inflate", "quality": 9})


def test_apply_material_accepts_a_preset_or_the_custom_object(spec: dict[str, Any]) -> None:
    body = validator(spec, body_schema("/api/apply-material"))
    for name in PRESETS:
        assert body.is_valid({"job_id": JOB, "material": name})
    custom = {"base_color": "#c0392b", "metallic": 0.0, "roughness": 0.6}
    assert body.is_valid({"job_id": JOB, "material": custom})
    assert not body.is_valid({"job_id": JOB, "material": "gold"})
    assert not body.is_valid({"job_id": JOB, "material": {**custom, "metallic": 2.0}})


def test_analyze_stl_declares_the_mesh_types_and_its_415(spec: dict[str, Any]) -> None:
    operation = spec["paths"]["/api/analyze-stl"]["post"]
    multipart = operation["requestBody"]["content"]["multipart/form-data"]
    declared = {t.strip() for t in multipart["encoding"]["file"]["contentType"].split(",")}
    assert declared == {"model/stl", "model/obj", "application/ply", "model/gltf-binary"}
    assert "image/png" not in declared
    unsupported = operation["responses"]["415"]
    assert "STL, OBJ, PLY or GLB" in unsupported["description"]
    assert unsupported["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
