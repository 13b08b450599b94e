"""Generation parameters are defined once: the HTTP body, the catalog, the CLI's flags and
the run's ticket all derive from GenerationParams' fields."""

from __future__ import annotations

import argparse
from enum import StrEnum
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from deployments.shape import ShapeTexture
from serve_app.cli import _parser
from serve_app.commands.flags import add_model_flags, model_values
from serve_app.commands.remote import _options
from serve_app.contracts.params import TUNABLE_PARAMETERS, TUNABLES, GenerationParams, GeneratorName
from serve_app.contracts.runs import JobTicket, RunRequest, UploadInfo
from serve_app.contracts.text import TextToImageParams
from serve_app.errors import GeneratorVersionChangedError, WorkerLostError
from serve_app.pipeline.config import PipelineConfig
from serve_app.pipeline.generators.catalog import SPECS, resolve_params
from serve_app.registry.cache import cache_key
from serve_app.registry.journal import Ledger
from serve_app.registry.workers import Workers
from serve_app.schemas.jobs import GenerateOptions
from serve_app.storage import ArtifactStore


def test_the_http_body_has_generation_params_own_fields() -> None:
    for name, field in GenerationParams.model_fields.items():
        assert repr(GenerateOptions.model_fields[name]) == repr(field), name
    options = GenerateOptions(quality=3, steps=9, generator="hunyuan3d", format="stl")
    assert options.params() == GenerationParams(quality=3, steps=9)


def test_each_generator_takes_the_parameters_its_fields_name() -> None:
    assert set(SPECS) == set(GeneratorName)
    assert SPECS[GeneratorName.HUNYUAN3D].parameters == TUNABLE_PARAMETERS
    assert SPECS[GeneratorName.INFLATE].parameters == ()
    for quality in (1, 5, 10):
        resolved = resolve_params("hunyuan3d", GenerationParams(quality=quality))
        assert resolved.given() == {name: TUNABLES[name].at(quality) for name in TUNABLES}
    steps = GenerationParams.model_fields["steps"]
    assert steps.description == (
        "hunyuan3d, hunyuan3d_mv: denoising steps; default from quality 1..10: "
        "5, 10, 15, 20, 30, 30, 40, 40, 50, 50"
    )


def test_each_catalog_entry_loads_its_generator() -> None:
    generator = SPECS[GeneratorName.INFLATE].load(PipelineConfig(device="cpu"))
    assert generator.name == GeneratorName.INFLATE and generator.version == "inflate-1"


class Finish(StrEnum):
    MATTE = "matte"
    GLOSSY = "glossy"


class Example(BaseModel):
    level: int = Field(default=3, ge=1, le=9, description="how much")
    scale: float | None = Field(default=None, description="a factor")
    mode: Literal["a", "b"] = "a"
    finish: Finish | None = None
    label: str | None = None


def test_flags_are_made_from_a_models_fields() -> None:
    parser = argparse.ArgumentParser()
    assert add_model_flags(parser, Example, exclude=("label",)) == [
        "level",
        "scale",
        "mode",
        "finish",
    ]
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    assert actions["level"].type is int and actions["level"].help == "how much; default 3"
    assert actions["scale"].type is float and actions["scale"].help == "a factor"
    assert actions["mode"].choices == ["a", "b"] and actions["mode"].help == "default a"
    assert actions["finish"].choices == ["matte", "glossy"]
    args = parser.parse_args(["--scale", "2.5", "--finish", "glossy"])
    assert model_values(args, Example) == {"scale": 2.5, "finish": "glossy"}
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "c"])


def _flags(argv: list[str]) -> dict[str, argparse.Action]:
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in commands.choices[argv[0]]._actions}


@pytest.mark.parametrize("command", ["generate", "submit"])
def test_every_generation_parameter_has_its_flag_with_the_fields_doc(command: str) -> None:
    flags = _flags([command])
    for name in TUNABLE_PARAMETERS:
        field = GenerationParams.model_fields[name]
        assert flags[name].option_strings == ["--" + name.replace("_", "-")]
        assert flags[name].help == field.description, name
    assert flags["quality"].help == "1 (fast) to 10 (fine); default 5"
    text = _flags(["text"])
    for name in ("negative_prompt", "seed", "steps", "guidance_scale", "width", "height"):
        assert text[name].help == TextToImageParams.model_fields[name].description


def test_submit_sends_the_generator_parameters_given() -> None:
    args = _parser().parse_args(
        ["submit", "x.png", "--generator", "hunyuan3d", "--steps", "7", "--height", "80"]
    )
    options = _options(args, dimensions=True)
    assert options.generator == "hunyuan3d" and options.steps == 7 and options.seed is None
    assert options.dimensions.height == 80 and options.quality == 5 and options.format == "glb"


def test_the_registry_keys_the_ticket_once(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    workers = Workers(Ledger(tmp_path / "journal.sqlite"), store, "u2netp", "bake-1-fill")
    params = resolve_params("hunyuan3d", GenerationParams(quality=2))
    upload = UploadInfo("ab" * 32, 10, "image/png")
    ticket = JobTicket("0" * 32, 1, upload, RunRequest(params, "glb", "hunyuan3d"))
    keyed = workers.keyed(ticket, "hunyuan3d-7")
    assert keyed.generator_version == "hunyuan3d-7"
    assert keyed.artifact_key == cache_key(
        "ab" * 32, params, "u2netp", "hunyuan3d", "hunyuan3d-7", texture="bake-1-fill"
    )
    # The ShapeTexture replica stores under the ticket's key when its version is the same...
    assert ShapeTexture._checked_key(keyed, "hunyuan3d-7") == keyed.artifact_key
    # ...and refuses a ticket keyed for another version (or not keyed): the run is retried.
    for ticket_ in (keyed, ticket):
        with pytest.raises(GeneratorVersionChangedError) as refused:
            ShapeTexture._checked_key(ticket_, "hunyuan3d-8")
        assert isinstance(refused.value, WorkerLostError)
        assert refused.value.details == {"generator": "hunyuan3d", "version": "hunyuan3d-8"}
