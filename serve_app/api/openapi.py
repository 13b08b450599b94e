"""The OpenAPI document as this service accepts it: resolvable references, enabled generators.

FastAPI builds the document from the routes; two things it cannot know are added here, once,
when the document is first asked for:

- a request body given as a pydantic model's own JSON schema (a route's ``openapi_extra``)
  keeps its ``$defs`` inside itself, where ``#/$defs/...`` does not resolve in the document:
  the definitions move to ``components/schemas`` and the references follow them;
- a ``generator`` field accepts only the generators this deployment enabled (its config),
  so its schema lists them as an enum;
- apply-material's ``material``, when a name, is one of the presets (an enum).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI

from serve_app.meshtools.materials import PRESETS
from serve_app.schemas.jobs import GENERATOR_NAME

_DEFS_PREFIX = "#/$defs/"
_COMPONENTS_PREFIX = "#/components/schemas/"


def install_openapi(app: FastAPI, generators: Sequence[str]) -> None:
    """Make ``app.openapi()`` answer the document with :func:`fix_document` applied."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            fix_document(document, generators)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def fix_document(document: dict[str, Any], generators: Sequence[str]) -> None:
    """Lift nested ``$defs`` into ``components/schemas`` and name the enabled generators,
    in place."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    _lift_defs(document, components)
    _name_generators(document, list(generators))
    _name_presets(components)


def _lift_defs(node: Any, components: dict[str, Any]) -> None:
    """Move every nested schema's ``$defs`` into ``components`` (a name already there with
    another schema gets a suffix) and point the references at them."""
    if isinstance(node, list):
        for item in node:
            _lift_defs(item, components)
        return
    if not isinstance(node, dict):
        return
    defs = node.pop("$defs", None)
    if isinstance(defs, dict):
        same = {name: name for name in defs}
        renamed: dict[str, str] = {}
        for name, schema in defs.items():
            lifted, target, n = _retarget(schema, same), name, 1
            while target in components and components[target] != lifted:
                n += 1
                target = f"{name}{n}"
            renamed[name] = target
        for name, schema in defs.items():
            components[renamed[name]] = _retarget(schema, renamed)
        retargeted = _retarget(node, renamed)
        node.clear()
        node.update(retargeted)
    for value in list(node.values()):
        _lift_defs(value, components)


def _retarget(node: Any, renamed: dict[str, str]) -> Any:
    """``node`` with its ``#/$defs/NAME`` references pointing at ``components/schemas``."""
    if isinstance(node, list):
        return [_retarget(item, renamed) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value.startswith(_DEFS_PREFIX):
            name = value[len(_DEFS_PREFIX) :]
            out[key] = _COMPONENTS_PREFIX + renamed.get(name, name)
        else:
            out[key] = _retarget(value, renamed)
    return out


def _name_generators(node: Any, generators: list[str]) -> None:
    """Replace each generator-name schema (a string of ``GENERATOR_NAME``'s pattern) by the
    enum of the enabled generators."""
    if isinstance(node, list):
        for item in node:
            _name_generators(item, generators)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "string" and node.get("pattern") == GENERATOR_NAME:
        del node["pattern"]
        node["enum"] = list(generators)
    for value in node.values():
        _name_generators(value, generators)


def _name_presets(components: dict[str, Any]) -> None:
    """apply-material's ``material``: a preset's name (enum), or the custom object."""
    material = components.get("MaterialRequest", {}).get("properties", {}).get("material", {})
    for branch in material.get("anyOf", []):
        if branch.get("type") == "string":
            branch["enum"] = list(PRESETS)
