"""Views in the Python client and the CLI: ``views={...}`` and ``--view VIEW=PATH`` on
upload and submit, and ``texture-mesh``; checked before anything is sent, and sent as the
API reads them (the client's requests against the in-process API)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trimesh

from serve_app.cli import main
from serve_app.client import calls
from serve_app.pipeline.runner import Pipeline
from tests.meshes import binary_stl
from tests.support import encode, photo
from tests.unit.inprocess import InProcessService, app_config, in_process_service

NOWHERE = "http://127.0.0.1:9"


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    made = {}
    for name, source in (("front", "chelsea"), ("left", "coffee"), ("back", "rocket")):
        made[name] = tmp_path / f"{name}.png"
        made[name].write_bytes(encode(photo(source)[:96, :128]))
    ball = trimesh.creation.icosphere(subdivisions=2, radius=10.0)
    made["mesh"] = tmp_path / "ball.stl"
    made["mesh"].write_bytes(binary_stl(ball.vertices, ball.faces))
    return made


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["submit", "{front}", "--view", "left"], "write VIEW=PATH"),
        (["submit", "{front}", "--view", "side={left}"], "'side' is not a view"),
        (["submit", "{front}", "--view", "front={left}"], "'front' is not a view"),
        (["submit", "{front}", "--view", "left={left}", "--view", "left={back}"], "twice"),
        (["submit", "{front}", "--view", "left=nowhere.png"], "nowhere.png: no such file"),
        (["submit", "{front}", "{back}", "--view", "left={left}"], "one IMAGE"),
        (["texture-mesh", "{mesh}"], "at least one --view"),
        (["texture-mesh", "nowhere.stl", "--view", "front={front}"], "nowhere.stl: no such"),
        (["texture-mesh", "{mesh}", "--view", "up={front}"], "'up' is not a view"),
        (["texture-mesh", "{mesh}", "--view", "front={front}", "--quality", "0"], "quality"),
        (["generate", "{front}", "-o", "out", "--view", "side={left}"], "'side' is not a view"),
    ],
)
def test_view_usage_errors_exit_2_and_say_what_is_wrong(
    argv: list[str], says: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(**files) for a in argv]
    if args[0] != "generate":
        args += ["--url", NOWHERE]
    assert exit_code(args) == 2
    assert says in capsys.readouterr().err


def test_the_client_refuses_a_bad_view_before_sending(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="'side' is not a view"):
        calls.upload(files["front"], views={"side": files["left"]})
    with pytest.raises(ValueError, match="not none"):
        calls.texture_mesh(files["mesh"], {}, {})
    with pytest.raises(ValueError, match="quality"):
        calls.texture_mesh(files["mesh"], {"front": files["front"]}, {"quality": 11})


@pytest.fixture
def service(tmp_path: Path) -> Iterator[InProcessService]:
    with in_process_service(app_config(tmp_path)) as service:
        yield service


def test_the_client_s_requests_are_what_the_api_reads(
    service: InProcessService, files: dict[str, Path]
) -> None:
    call = calls.upload(files["front"], views={"back": files["back"], "left": files["left"]})
    answer = service.http.request(call.method, call.path, **call.send_args())
    assert answer.status_code == 200, answer.text
    assert [v.view for v in call.read(answer).views] == ["front", "left", "back"]
    call2 = calls.texture_mesh(
        files["mesh"], {"back": files["back"]}, {"format": "stl", "quality": 2}
    )
    answer = service.http.request(call2.method, call2.path, **call2.send_args())
    assert answer.status_code == 202, answer.text
    job = call2.read(answer)
    assert job.generator == "given_mesh" and job.format == "stl" and job.quality == 2
    assert [v.view for v in job.views] == ["back"]


def test_the_in_process_pipeline_cuts_out_every_view_and_builds_from_them() -> None:
    from serve_app.pipeline.config import PipelineConfig
    from tests.support import models_dir

    pipeline = Pipeline.from_config(PipelineConfig(models_dir=models_dir()))
    front = encode(photo("chelsea")[:200, :260])
    left = encode(photo("coffee")[:200, :260])
    result = pipeline.run(front, views={"left": left})
    assert result.mesh.meta["views"] == "front,left"
    assert len(result.mesh.faces) > 0 and np.isfinite(result.mesh.vertices).all()
    alone = pipeline.run(front)
    assert alone.mesh.meta["views"] == "front"
