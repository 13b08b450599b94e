"""Command-line flags made from a request model's fields: name, type, help and choices.

A field ``guidance_scale: float | None = Field(description=...)`` becomes
``--guidance-scale FLOAT`` with that description as its help; a ``Literal`` or an Enum
gives the choices. Flags default to "not given", so the model's own default applies and
its validation (ranges, patterns) judges the values: the model is the one definition.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

#: What argparse can hold: the container of a parser or an argument group.
Flags = argparse._ActionsContainer


def add_model_flags(
    parser: Flags,
    model: type[BaseModel],
    *,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    metavars: Mapping[str, str] | None = None,
) -> list[str]:
    """Add a ``--flag`` per field of ``model`` (those in ``only``, less ``exclude``), in the
    order of its fields, with the value's name in help from ``metavars`` (else its type);
    the names of the fields added."""
    wanted = set(only) if only is not None else None
    added = []
    for name, info in model.model_fields.items():
        if name in exclude or (wanted is not None and name not in wanted):
            continue
        options = flag_options(info)
        if metavars and name in metavars:
            options["metavar"] = metavars[name]
        parser.add_argument("--" + name.replace("_", "-"), dest=name, **options)
        added.append(name)
    return added


def flag_options(info: FieldInfo) -> dict[str, Any]:
    """``add_argument``'s keywords for a field: its type or choices, and its help."""
    kind = _scalar(info.annotation)
    options: dict[str, Any] = {"default": None}
    if get_origin(kind) is Literal:
        options["choices"] = list(get_args(kind))
    elif isinstance(kind, type) and issubclass(kind, Enum):
        options["choices"] = [member.value for member in kind]
    elif kind in (int, float, str):
        options["type"] = kind
        options["metavar"] = "TEXT" if kind is str else kind.__name__.upper()
    else:
        raise TypeError(f"no command-line flag for a field of type {info.annotation!r}")
    notes = [info.description] if info.description else []
    if info.default is not None and not info.is_required() and info.default_factory is None:
        notes.append(f"default {_plain(info.default)}")
    if notes:
        options["help"] = "; ".join(notes).replace("%", "%%")
    return options


def model_values(
    args: argparse.Namespace, model: type[BaseModel], names: Iterable[str] | None = None
) -> dict[str, Any]:
    """The values given on the command line for ``model``'s fields (``names`` of them)."""
    fields = model.model_fields if names is None else names
    return {
        name: value
        for name in fields
        if name in model.model_fields and (value := getattr(args, name, None)) is not None
    }


def _scalar(annotation: Any) -> Any:
    """``X`` of ``X | None`` (the type a flag's value has); other annotations as they are."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value
