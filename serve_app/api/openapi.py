"""The OpenAPI document as this service accepts it: resolvable references, enabled generators.

FastAPI builds the document from the routes; two things it cannot know are added here, once,
when the document is first asked for:

- a request body given as a pydantic model's own JSON schema (a route's ``openapi_extra``)
  keeps its ``$defs`` inside itself, where ``#/$defs/...`` does not resolve in the document:
  the definitions move to ``components/schemas`` and the references follow them;
- a ``generator`` field accepts only the generators this deployment enabled (its config),
  so its schema lists them as an enum; and a generator parameter is accepted only when the
  generator the request runs (named, else the default) takes it, so each such parameter
  must be null or absent otherwise (``if``/``then`` rules);
- text-to-image's ``steps`` is bounded by this deployment's ``text_to_image.max_steps``
  when it has a text-to-image model (without one, every request is a 503);
- apply-material's ``material``, when a name, is one of the presets (an enum).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import FastAPI

from serve_app.config import AppConfig
from serve_app.contracts.params import TUNABLES
from serve_app.meshtools.materials import PRESETS
from serve_app.schemas.jobs import GENERATOR_NAME

_DEFS_PREFIX = "#/$defs/"
_COMPONENTS_PREFIX = "#/components/schemas/"


def install_openapi(app: FastAPI, config: AppConfig) -> None:
    """Make ``app.openapi()`` answer the document with :func:`fix_document` applied for
    the deployment ``config`` describes."""
    build: Callable[[], dict[str, Any]] = app.openapi
    pipeline = config.pipeline

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            fix_document(document, pipeline.generators.enabled(), pipeline.generator)
            if config.text_to_image.model_path is not None:
                _bound_steps(document, config.text_to_image.max_steps)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def fix_document(document: dict[str, Any], generators: Sequence[str], default: str) -> None:
    """Lift nested ``$defs`` into ``components/schemas``, name the enabled generators and
    tie their parameters to them, in place (``default``: the generator of a request that
    names none)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    _lift_defs(document, components)
    _tie_parameters(document, list(generators), default)
    _name_generators(document, list(generators))
    _name_presets(components)


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``node``, each before what it holds; what it holds is read once
    the caller has had it, so changes the caller makes to it are walked."""
    if isinstance(node, list):
        for item in node:
            yield from _objects(item)
    elif isinstance(node, dict):
        yield node
        for value in list(node.values()):
            yield from _objects(value)


def _lift_defs(document: dict[str, Any], components: dict[str, Any]) -> None:
    """Move every nested schema's ``$defs`` into ``components`` (a name already there with
    another schema gets a suffix) and point the references at them."""
    for node in _objects(document):
        defs = node.pop("$defs", None)
        if not isinstance(defs, dict):
            continue
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


def _name_generators(document: dict[str, Any], generators: list[str]) -> None:
    """Replace each generator-name schema (a string of ``GENERATOR_NAME``'s pattern) by the
    enum of the enabled generators."""
    for node in _objects(document):
        if node.get("type") == "string" and node.get("pattern") == GENERATOR_NAME:
            del node["pattern"]
            node["enum"] = list(generators)


def _is_generator_name(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    branches = schema.get("anyOf", [schema])
    return any(b.get("pattern") == GENERATOR_NAME for b in branches if isinstance(b, dict))


def parameter_rules(parameters: Sequence[str], generators: list[str], default: str) -> list[Any]:
    """JSON Schema rules: each parameter is null or absent unless the request's generator
    (``generator``, else ``default``) takes it."""
    rules: list[Any] = []
    for name in parameters:
        takers = [g for g in generators if g in TUNABLES[name].users]
        others = [g for g in generators if g not in takers]
        if not others:
            continue  # every enabled generator takes it
        unset = {"properties": {name: {"type": "null"}}}
        if not takers:
            rules.append(unset)
        elif default in takers:  # unset unless the request names a generator without it
            named = {"properties": {"generator": {"enum": others}}, "required": ["generator"]}
            rules.append({"if": named, "then": unset})
        else:  # unset unless the request names a generator that takes it
            named = {"properties": {"generator": {"enum": takers}}, "required": ["generator"]}
            rules.append({"if": {"not": named}, "then": unset})
    return rules


def _tie_parameters(document: dict[str, Any], generators: list[str], default: str) -> None:
    """Add :func:`parameter_rules` to each object schema with a generator-name field."""
    for node in _objects(document):
        properties = node.get("properties")
        if isinstance(properties, dict) and _is_generator_name(properties.get("generator")):
            present = [name for name in TUNABLES if name in properties]
            rules = parameter_rules(present, generators, default)
            if rules:
                node["allOf"] = [*node.get("allOf", []), *rules]


def _bound_steps(document: dict[str, Any], max_steps: int) -> None:
    """Text-to-image's ``steps`` at most ``max_steps`` (this deployment's limit)."""
    schemas = document.get("components", {}).get("schemas", {})
    steps = schemas.get("TextToImageRequest", {}).get("properties", {}).get("steps", {})
    for branch in steps.get("anyOf", [steps]):
        if branch.get("type") == "integer":
            branch["maximum"] = min(branch.get("maximum", max_steps), max_steps)


def _name_presets(components: dict[str, Any]) -> None:
    """apply-material's ``material``: a preset's name (enum), or the custom object."""
    material = components.get("MaterialRequest", {}).get("properties", {}).get("material", {})
    for branch in material.get("anyOf", []):
        if branch.get("type") == "string":
            branch["enum"] = list(PRESETS)
