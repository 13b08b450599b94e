"""Requests made from the OpenAPI document alone, as a property-based API tester makes them:
each operation's example or a minimal valid body, then one field at a time set to its
boundary values (bounds, one past them, enum members and a stranger, wrong types, missing
required fields, unknown fields). Each request is labelled valid or invalid by the document
itself (JSON Schema 2020-12 over the document's references), never by the service.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE = "urn:orfeas:openapi"
#: Operations that change jobs run after the ones that only read them.
CHANGING = ("post", "put", "patch", "delete")


@dataclass
class Case:
    """One request, and whether the document says it should be accepted."""

    method: str
    path: str  # the template, as in the document
    url: str
    valid: bool
    why: str
    query: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    data: dict[str, str] | None = None


class Document:
    """The OpenAPI document, its references resolved, with values that exist in the service
    (``known``: a parameter name, like ``job_id``, to a value that names a real thing) and
    the files to send in binary fields (label → name, content, media type)."""

    def __init__(
        self,
        spec: dict[str, Any],
        known: dict[str, str],
        files: dict[str, tuple[str, bytes, str]],
    ) -> None:
        self.spec = spec
        self.known = known
        self.files = files
        resource = Resource.from_contents(spec, default_specification=DRAFT202012)
        self._registry: Registry = Registry().with_resource(BASE, resource)

    def deref(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            node: Any = self.spec
            for part in schema["$ref"][2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            schema = node
        return schema

    def is_valid(self, schema: dict[str, Any], value: Any) -> bool:
        """Whether ``value`` is valid by ``schema`` (part of the document: its local
        references are read in the document)."""
        validator = Draft202012Validator(_absolute(schema), registry=self._registry)
        return bool(validator.is_valid(value))

    def sample(self, schema: dict[str, Any], name: str = "") -> Any:
        """A value the schema accepts, made simply (a known id where the name says so)."""
        schema = self.deref(schema)
        if name in self.known and self.is_valid(schema, self.known[name]):
            return self.known[name]
        if "example" in schema:
            return copy.deepcopy(schema["example"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branches = [self.deref(b) for b in schema[key]]
                typed = [b for b in branches if b.get("type") != "null"] or branches
                return self.sample(typed[0], name)
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "object":
            props = schema.get("properties", {})
            return {p: self.sample(props[p], p) for p in schema.get("required", []) if p in props}
        if kind == "array":
            return [self.sample(schema.get("items", {}))] * max(1, schema.get("minItems", 0))
        if kind in ("integer", "number"):
            low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
            return int(low) if kind == "integer" else float(low)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        pattern = schema.get("pattern", "")
        if "{64}" in pattern:
            return "0" * 64
        if "{32}" in pattern:
            return "0123456789abcdef" * 2
        return "x" * max(1, schema.get("minLength", 1))

    def variations(self, schema: dict[str, Any], text: bool = False) -> Iterator[tuple[str, Any]]:
        """(label, value): boundary values of one schema, valid or not (``text``: a value
        that travels as text, in a path, query or header, whose wrong type is a word)."""
        schema = self.deref(schema)
        branches = [self.deref(b) for b in schema.get("anyOf", schema.get("oneOf", [schema]))]
        for branch in branches:
            kind = branch.get("type")
            if kind == "null":
                yield "null", None
            for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                if bound in branch:
                    value = branch[bound]
                    step = 1 if kind == "integer" else 0.001
                    yield bound, value
                    yield f"past {bound}", value + (step if "max" in bound.lower() else -step)
            for member in branch.get("enum", []):
                yield f"enum {member}", member
            if "enum" in branch:
                yield "not in enum", "not-a-member"
            if "maxLength" in branch:
                yield "maxLength", "a" * branch["maxLength"]
                yield "past maxLength", "a" * (branch["maxLength"] + 1)
            if "pattern" in branch:
                yield "not the pattern", "NOT/THE-PATTERN"
            if kind == "array" and "maxItems" in branch:
                yield "past maxItems", [self.sample(branch["items"])] * (branch["maxItems"] + 1)
        if text:
            yield "a word", "x"
        else:
            yield "wrong type", [] if schema.get("type") != "array" else "x"

    def cases(self) -> list[Case]:
        """Every operation's cases; reading operations first."""
        reads: list[Case] = []
        changes: list[Case] = []
        for path, operations in self.spec["paths"].items():
            for method, operation in operations.items():
                found = list(self._operation_cases(path, method, operation))
                (changes if method in CHANGING else reads).extend(found)
        return reads + changes

    def _operation_cases(self, path: str, method: str, op: dict[str, Any]) -> Iterator[Case]:
        params = {p["name"]: p for p in op.get("parameters", [])}
        in_path = {n: self.sample(p["schema"], n) for n, p in params.items() if p["in"] == "path"}

        def case(why: str, valid: bool, values: dict[str, Any], **rest: Any) -> Case:
            url = path.format(**{n: values[n] for n in in_path})
            given = {n: v for n, v in values.items() if n not in in_path and v is not None}
            query = {n: v for n, v in given.items() if params[n]["in"] == "query"}
            headers = {n: str(v) for n, v in given.items() if params[n]["in"] == "header"}
            return Case(method, path, url, valid, why, query=query, headers=headers, **rest)

        body = op.get("requestBody", {}).get("content", {})
        json_media = body.get("application/json")
        base_json = None
        if json_media is not None:
            base_json = json_media.get("example") or self.sample(json_media["schema"])
            base_json = self._known_ids(base_json)
        multipart = body.get("multipart/form-data")
        if json_media is not None or multipart is None:
            yield case("as documented", True, in_path, json=base_json)
        for name, param in params.items():
            for label, value in self.variations(param["schema"], text=True):
                valid = self.is_valid(param["schema"], value)
                yield case(f"{name}: {label}", valid, {**in_path, name: value}, json=base_json)
        if json_media is not None:
            schema = json_media["schema"]
            for label, value in self._body_variations(schema, base_json):
                yield case(label, self.is_valid(schema, value), in_path, json=value)
        if multipart is not None:
            for label, valid, files, data in self._multipart(multipart):
                yield case(label, valid, in_path, files=files, data=data)

    def _known_ids(self, body: Any) -> Any:
        if isinstance(body, dict):
            return {
                k: self.known.get(k, v) if isinstance(v, str) else self._known_ids(v)
                for k, v in body.items()
            }
        return body

    def _body_variations(self, schema: dict[str, Any], base: Any) -> Iterator[tuple[str, Any]]:
        """A body with one property varied, dropped, or a stranger added (one level down
        into object properties too)."""
        schema = self.deref(schema)
        if not isinstance(base, dict):
            return
        props = schema.get("properties", {})
        for name, prop in props.items():
            for label, value in self.variations(prop):
                yield f"{name}: {label}", {**base, name: value}
            inner = self.deref(prop)
            inner = next(
                (
                    self.deref(b)
                    for b in inner.get("anyOf", [inner])
                    if "$ref" in b or "properties" in b
                ),
                inner,
            )
            if inner.get("type") == "object" and "properties" in inner:
                nested = base.get(name) if isinstance(base.get(name), dict) else {}
                for inner_name, inner_prop in inner["properties"].items():
                    for label, value in self.variations(inner_prop):
                        yield (
                            f"{name}.{inner_name}: {label}",
                            {
                                **base,
                                name: {**nested, inner_name: value},
                            },
                        )
        for name in schema.get("required", []):
            yield f"without {name}", {k: v for k, v in base.items() if k != name}
        yield "an unknown field", {**base, "not_a_field": 1}

    def _multipart(
        self, media: dict[str, Any]
    ) -> Iterator[tuple[str, bool, dict[str, tuple[str, bytes, str]], dict[str, str]]]:
        """Files for each binary field: one of each kind the tests hold, declared by its
        type; valid when the document allows that type and length."""
        schema = self.deref(media["schema"])
        encoding = media.get("encoding", {})
        data = {
            n: str(self.deref(p).get("example", ""))
            for n, p in schema.get("properties", {}).items()
            if self.deref(p).get("type") == "string" and "example" in self.deref(p)
        }

        def allowed(name: str) -> list[str] | None:
            declared = encoding.get(name, {}).get("contentType")
            return [t.strip() for t in declared.split(",")] if declared else None

        def fits(name: str, content: bytes, media_type: str) -> bool:
            prop = self.deref(schema["properties"][name])
            item = self.deref(prop.get("items", {})) if prop.get("type") == "array" else prop
            kinds = allowed(name)
            return (kinds is None or media_type in kinds) and len(content) >= item.get(
                "minLength", 0
            )

        # The other fields a body needs (required ones, and the first choice of an anyOf of
        # required ones), each with a file it accepts; each field is then varied alone.
        needed = list(schema.get("required", []))
        needed += next(iter(schema.get("anyOf", [])), {}).get("required", [])
        base: dict[str, tuple[str, bytes, str]] = {}
        for name in needed:
            good = next((f for f in self.files.values() if f[1] and fits(name, f[1], f[2])), None)
            if good is not None and name not in data:
                base[name] = good
        for name, prop in schema.get("properties", {}).items():
            prop = self.deref(prop)
            item = self.deref(prop.get("items", {})) if prop.get("type") == "array" else prop
            if item.get("type") != "string" or "example" in item:
                continue
            others = {k: v for k, v in base.items() if k != name}
            for label, (file_name, content, media_type) in self.files.items():
                valid = fits(name, content, media_type)
                files = {**others, name: (file_name, content, media_type)}
                yield f"{name}: {label}", valid, files, data


def _absolute(node: Any) -> Any:
    """``node`` with its local references (``#/...``) made absolute (the document's URI)."""
    if isinstance(node, dict):
        return {
            k: BASE + v
            if k == "$ref" and isinstance(v, str) and v.startswith("#")
            else _absolute(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_absolute(item) for item in node]
    return node
