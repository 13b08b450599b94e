"""The service commands' command line: usage errors exit 2 before anything is sent, and
what people and scripts see of a job's events."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from serve_app.cli import main
from serve_app.client import AsyncOrfeasClient
from serve_app.client.events import EventTracker
from serve_app.commands.common import Output
from serve_app.commands.progress import JobBoard, eta_text, short
from serve_app.commands.runs import Run, Runner, ended_text
from tests.support import REPO
from tests.unit.test_client_protocol import JOB_ID, job

#: Nothing listens here: a command that got as far as sending would fail with exit 1.
NOWHERE = "http://127.0.0.1:9"


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse's own usage errors
        return int(stop.code or 0)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "cat.png"
    path.write_bytes(b"not sent")
    return path


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["submit"], "the following arguments are required: IMAGE"),
        (["submit", "missing.jpg"], "missing.jpg: no such file"),
        (
            ["submit", "{image}", "--quality", "11"],
            "quality: Input should be less than or equal to 10",
        ),
        (["submit", "{image}", "--format", "fbx"], "invalid choice: 'fbx'"),
        (["submit", "{image}", "--generator", "Bad Name!"], "generator: String should match"),
        (["submit", "{image}", "--width", "-5"], "dimensions.width"),
        (["submit", "{image}", "--api-key-env", "ORFEAS_TEST_UNSET"], "ORFEAS_TEST_UNSET"),
        (["submit", "{image}", "--url", "ftp://host"], "--url: base_url must be an http(s) URL"),
        (["status", "123"], "not a job id"),
        (["watch", "../../etc"], "not a job id"),
        (["cancel", JOB_ID.upper()], "not a job id"),
        (["download", JOB_ID, "fbx"], "invalid choice: 'fbx'"),
        (["download", JOB_ID, "glb", "--variant", "v1"], "not a variant id"),
        (["text", "bad\x07prompt"], "prompt"),
        (["text", "a teapot", "--width", "65"], "width: Input should be a multiple of 8"),
        (["text", "a teapot", "--3d", "--quality", "0"], "quality"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_exit_2_and_say_what_is_wrong(
    argv: list[str], says: str, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.replace("{image}", str(image)) for a in argv]
    if args[0] in ("submit", "status", "watch", "cancel", "download", "text"):
        args += ["--url", NOWHERE] if "--url" not in args else []
    assert exit_code(args) == 2
    assert says in capsys.readouterr().err


def test_a_bare_command_line_is_a_usage_error_in_a_subprocess_too() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "serve_app", "submit", "--json"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "usage: python -m serve_app submit" in done.stderr
    assert done.stdout == ""


def test_an_unreachable_service_is_exit_1_with_a_json_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status", JOB_ID, "--url", NOWHERE, "--json"]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    error = json.loads(line)
    assert error["type"] == "error" and error["code"] == "transport_error"
    assert "could not connect" in error["message"]


def events() -> list[object]:
    tracker = EventTracker()
    states = [
        job(status="queued", stage=None, queue_position=4, eta_seconds=95.0),
        job(status="queued", stage=None, queue_position=1, eta_seconds=30.0),
        job(stage="background_removal", progress=2.0, eta_seconds=70.0),
        job(stage="background_removal", progress=6.0, eta_seconds=65.0),
        job(stage="shape_generation", progress=30.0, eta_seconds=20.4),
        job(status="failed", stage="shape_generation", progress=30.0,
            error={"code": "no_subject", "message": "no subject"}),
    ]  # fmt: skip
    return [e for e in (tracker.update(s) for s in states) if e is not None]


def test_off_a_terminal_each_state_stage_place_in_the_queue_and_end_is_one_line() -> None:
    output = Output(False)
    output.console = Console(file=io.StringIO(), force_terminal=False, width=100)
    with JobBoard(output) as board:
        board.add(JOB_ID, "photos/cat.jpg")
        for event in events():
            board.show(event)  # type: ignore[arg-type]
    assert output.console.file.getvalue().splitlines() == [  # type: ignore[attr-defined]
        "photos/cat.jpg: queued, 3 ahead 0% (ETA 1:35)",
        "photos/cat.jpg: queued, next 0% (ETA 30 s)",
        "photos/cat.jpg: background_removal 2% (ETA 1:10)",
        "photos/cat.jpg: shape_generation 30% (ETA 20 s)",
        "photos/cat.jpg: failed 30% (ETA -)",
    ]


def test_with_json_each_event_is_a_line_with_the_whole_job(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with JobBoard(Output(True)) as board:
        board.add(JOB_ID, "cat.jpg")
        for event in events():
            board.show(event)  # type: ignore[arg-type]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    types = ["state", "progress", "state", "progress", "stage", "ended"]
    assert [line["type"] for line in lines] == types
    assert {line["label"] for line in lines} == {"cat.jpg"}
    assert lines[-1]["job"]["error"]["code"] == "no_subject"


def test_bars_name_a_file_shortly_and_etas_read_as_time() -> None:
    assert short("/very/long/path/to/the/photo-of-a-cat.jpg") == "photo-of-a-cat.jpg"
    assert short("x" * 40, width=10) == "xxxxxxxxx…"
    assert [eta_text(s) for s in (None, 0.4, 59.6, 61, 3600)] == [
        "-",
        "0 s",
        "1:00",
        "1:01",
        "60:00",
    ]


def test_submit_exits_1_when_any_job_fails_and_saves_the_ones_that_completed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok_id, bad_id = "a" * 32, "b" * 32
    ended = {
        ok_id: job(job_id=ok_id, status="completed", stage="export", progress=100.0),
        bad_id: job(job_id=bad_id, status="failed", stage="background_removal",
                    error={"code": "no_subject", "message": "no subject in the photo"}),
    }  # fmt: skip

    def service(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/events"):
            job_id = path.split("/")[3]
            body = f"id: 1\ndata: {ended[job_id].model_dump_json()}\n\n"
            return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
        if path.startswith("/download/"):
            return httpx.Response(200, content=b"glTF model")
        raise AssertionError(path)

    async def start(client: AsyncOrfeasClient, run: Run) -> str:
        run.job_id = ok_id if run.label == "ok.png" else bad_id
        return run.job_id

    runs = [
        Run(name, "glb", tmp_path, target=tmp_path / f"{name}.glb")
        for name in ("ok.png", "bad.png")
    ]

    async def scenario() -> int:
        transport = httpx.MockTransport(service)
        async with AsyncOrfeasClient("http://svc", transport=transport) as client:
            return await Runner(client, Output(True), key_given=False).run(runs, start)

    assert asyncio.run(scenario()) == 1
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["exit_code"] == 1
    assert [(j["label"], j["status"]) for j in result["jobs"]] == [
        ("ok.png", "completed"),
        ("bad.png", "failed"),
    ]
    assert result["jobs"][1]["error"]["code"] == "no_subject"
    assert (tmp_path / "ok.png.glb").read_bytes() == b"glTF model"
    assert not (tmp_path / "bad.png.glb").exists()


def test_a_job_that_did_not_complete_says_where_it_stopped_and_why() -> None:
    refused = {"code": "no_subject", "message": "no subject found", "stage": "background_removal"}
    assert ended_text("failed", refused) == (
        "failed in background_removal (no_subject): no subject found"
    )
    stopped = {"code": "cancelled", "message": "cancelled by request", "stage": "export"}
    assert ended_text("cancelled", stopped) == "cancelled in export: cancelled by request"
    lost = {"message": "could not connect (503 overloaded)", "code": "overloaded"}
    assert ended_text("error", lost) == "could not connect (503 overloaded)"
