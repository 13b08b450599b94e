"""``python -m serve_app submit|text|status|watch|cancel|download`` against the real service.

Each test runs the command line in a subprocess, as a user would: in a pseudo-terminal to
see its progress bars, or with ``--json`` to read what a script reads.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image

from serve_app.contracts.stages import MODEL_STAGES
from tests.client import Service, photo
from tests.gltf_validator import validate_glb
from tests.integration.test_client import PICTURE, PROMPT
from tests.support import REPO

pytestmark = pytest.mark.integration

#: A bound on each command (not a figure the tests check).
COMMAND_TIMEOUT_S = 240.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "serve_app", *args]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ORFEAS_URL", "ORFEAS_API_KEY")}
    return {**env, "COLUMNS": "120", "LINES": "40", **extra}


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), capture_output=True, text=True, cwd=REPO, env=environment(**env),
        timeout=COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every line of ``stdout`` as JSON (fails on a line that is not)."""
    return [json.loads(line) for line in stdout.splitlines()]


def in_terminal(*args: str) -> tuple[int, str]:
    """Run a command in a 120×40 pseudo-terminal; its exit code and all it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        command(*args), stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=environment(),
        close_fds=True,
    )  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + COMMAND_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed with the command
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:  # pragma: no cover - only past the bound
            proc.kill()
    return code, b"".join(chunks).decode("utf-8", errors="replace")


@pytest.fixture
def photo_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "cat.jpg"
    path.write_bytes(photo(unique=True, fmt="JPEG"))
    yield path


def test_submit_draws_a_progress_bar_per_job_and_saves_a_valid_glb(
    service: Service, photo_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, screen = in_terminal(
        "submit", str(photo_file), "--url", service.url, "-o", str(out), "--quality", "3"
    )
    text = ANSI.sub("", screen)
    assert code == 0, text
    # The bar: the photo's name, its stage, a percentage and the ETA, redrawn as it goes.
    assert re.search(r"cat\.jpg\s+(background_removal|shape_generation)\s.*\d+%\s+ETA", text), text
    assert "shape_generation" in text and "100%" in text
    assert "\x1b[" in screen  # drawn live, with terminal control sequences
    glb = out / "cat.glb"
    assert f"cat.jpg: completed -> {glb}" in text
    assert validate_glb(glb)["numErrors"] == 0
    assert sorted(p.name for p in out.iterdir()) == ["cat.glb"]


def test_ctrl_c_cancels_the_job_it_started_and_exits_1(service: Service, tmp_path: Path) -> None:
    for _ in range(3):  # a job that ends before the signal says nothing about cancel
        image = tmp_path / f"big-{time.monotonic_ns()}.png"
        image.write_bytes(photo(unique=True))
        proc = subprocess.Popen(
            command("submit", str(image), "--url", service.url, "-o", str(tmp_path),
                    "--quality", "10", "--json"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env=environment(),
        )  # fmt: skip
        assert proc.stdout is not None
        lines: list[dict[str, Any]] = []
        for line in proc.stdout:
            lines.append(json.loads(line))
            job = lines[-1].get("job") or {}
            if job.get("stage") == "shape_generation" and job.get("status") == "running":
                proc.send_signal(signal.SIGINT)
                break
        lines += json_lines(proc.stdout.read())
        code = proc.wait(timeout=COMMAND_TIMEOUT_S)
        result = lines[-1]
        assert result["type"] == "result", lines
        if result["jobs"][0]["status"] == "completed":
            continue
        break
    else:  # pragma: no cover - timing
        pytest.fail("every quality-10 job finished before Ctrl-C reached it")

    job_id = result["jobs"][0]["job_id"]
    assert code == 1, proc.stderr
    assert result == {
        "type": "result",
        "exit_code": 1,
        "jobs": [{"label": str(image), "job_id": job_id, "status": "cancelled", "path": None,
                  "error": None}],
    }  # fmt: skip
    said = [line for line in lines if line["type"] == "cancelled"]
    assert said == [
        {"type": "cancelled", "label": str(image), "job_id": job_id, "status": "cancelled"}
    ]
    status = httpx.get(f"{service.url}/api/job-status/{job_id}", timeout=30).json()
    assert status["status"] == "cancelled" and status["error"]["code"] == "cancelled"
    assert list(tmp_path.glob("big-*.glb")) == []


def test_json_output_is_one_object_per_line_for_every_command(
    service: Service, tmp_path: Path
) -> None:
    images = []
    for name in ("a", "b"):
        images.append(tmp_path / f"{name}.png")
        images[-1].write_bytes(photo(unique=True))
    submitted = run(
        "submit", *map(str, images), "--url", service.url, "-o", str(tmp_path / "out"),
        "--format", "stl", "--quality", "1", "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    lines = json_lines(submitted.stdout)
    kinds = {line["type"] for line in lines}
    assert {"submitted", "state", "stage", "ended", "downloaded", "result"} <= kinds
    result = lines[-1]
    assert result["exit_code"] == 0 and [j["status"] for j in result["jobs"]] == ["completed"] * 2
    assert [Path(j["path"]).name for j in result["jobs"]] == ["a.stl", "b.stl"]
    ended = [line for line in lines if line["type"] == "ended"]
    assert {e["job"]["status"] for e in ended} == {"completed"} and len(ended) == 2
    job_id = result["jobs"][0]["job_id"]

    status = run("status", job_id, "--url", service.url, "--json")
    (body,) = json_lines(status.stdout)
    assert status.returncode == 0 and body["job_id"] == job_id and body["status"] == "completed"

    watched = run("watch", job_id, "--url", service.url, "--json")
    events = json_lines(watched.stdout)
    assert watched.returncode == 0 and [e["type"] for e in events] == ["ended", "result"]

    target = tmp_path / "again.ply"
    fetched = run("download", job_id, "ply", "-o", str(target), "--url", service.url, "--json")
    (saved,) = json_lines(fetched.stdout)
    assert fetched.returncode == 0 and saved["path"] == str(target)
    assert saved["size_bytes"] == target.stat().st_size > 0
    assert target.read_bytes().startswith(b"ply")

    again = run("cancel", job_id, "--url", service.url, "--json")
    (refusal,) = json_lines(again.stdout)
    assert again.returncode == 1
    assert refusal == {
        "type": "error", "message": refusal["message"], "status": 409, "code": "job_conflict",
        "retry_after": None,
    }  # fmt: skip


def test_text_without_a_model_is_a_clear_error_and_exit_1(service: Service, tmp_path: Path) -> None:
    done = run("text", "a red teapot", "--3d", "--url", service.url, "-o", str(tmp_path))
    assert done.returncode == 1
    assert "text_to_image.model_path" in done.stderr and "503 model_not_configured" in done.stderr
    as_json = run("text", "a red teapot", "--url", service.url, "--json")
    result = json_lines(as_json.stdout)[-1]
    assert result["exit_code"] == 1 and result["jobs"][0]["status"] == "error"
    assert result["jobs"][0]["error"]["code"] == "model_not_configured"


def test_watch_status_and_cancel_name_what_they_did(service: Service, photo_file: Path) -> None:
    upload = httpx.post(
        f"{service.url}/api/upload-image", files={"image": photo_file.read_bytes()}, timeout=30
    ).json()
    job_id = upload["job_id"]
    status = run("status", job_id, "--url", service.url)
    assert status.returncode == 0 and status.stdout == f"job {job_id}: uploaded 0%\n"
    unknown = run("download", "f" * 32, "glb", "--url", service.url)
    assert unknown.returncode == 1 and "404 job_not_found" in unknown.stderr
    refused = run("cancel", job_id, "--url", service.url)
    assert refused.returncode == 1 and "409 job_conflict" in refused.stderr


def test_text_saves_the_picture_and_with_3d_the_model_or_says_which_stage_refused(
    text_app: Service, tmp_path: Path
) -> None:
    picture = [f"--{name}={value}" for name, value in PICTURE.items()]
    made = run("text", PROMPT, *picture, "--url", text_app.url, "-o", str(tmp_path), "--json")
    assert made.returncode == 0, made.stdout + made.stderr
    lines = json_lines(made.stdout)
    (job,) = lines[-1]["jobs"]
    assert lines[-1]["exit_code"] == 0 and job["status"] == "completed"
    assert job["path"] == str(tmp_path / f"{job['job_id']}.png")
    with Image.open(job["path"]) as image:
        assert image.format == "PNG" and image.size == (64, 64)
    assert {line["job"]["stage"] for line in lines if "job" in line} - {None} == {"text_to_image"}

    out = tmp_path / "model"
    to_3d = run(
        "text", PROMPT, "--3d", "--seed=43", "--steps=4", "--width=128", "--height=128",
        "--quality=1", "--url", text_app.url, "-o", str(out), "--json",
    )  # fmt: skip
    lines = json_lines(to_3d.stdout)
    result = lines[-1]
    (job,) = result["jobs"]
    (ended,) = [line["job"] for line in lines if line["type"] == "ended"]
    stages = [str(stage) for stage in MODEL_STAGES]
    assert ended["stages"] == ["text_to_image", *stages] and ended["status"] == job["status"]
    assert ended["text_to_image"]["made"]  # the picture exists either way
    if job["status"] == "completed":
        assert to_3d.returncode == 0 and result["exit_code"] == 0, to_3d.stderr
        assert job["path"] == str(out / f"{job['job_id']}.glb") and job["error"] is None
        assert validate_glb(Path(job["path"]))["numErrors"] == 0
        return
    # A picture of the tiny random model may have no subject: failed, saying where and why.
    assert job["status"] == "failed", job
    assert to_3d.returncode == 1 and result["exit_code"] == 1
    error = job["error"]
    assert error["stage"] in stages and error["code"] in ("no_subject", "no_surface"), error
    assert error["message"] and "Traceback" not in error["message"]
    assert job["path"] is None and list(out.iterdir()) == []


def test_submit_with_views_and_texture_mesh_save_valid_models(
    service: Service, photo_file: Path, tmp_path: Path
) -> None:
    left = tmp_path / "left.png"
    left.write_bytes(photo("coffee", "PNG"))
    out = tmp_path / "out"
    done = run("submit", str(photo_file), "--view", f"left={left}", "--url", service.url,
               "-o", str(out), "--quality", "2", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    ended = [e for e in json_lines(done.stdout) if e["type"] == "ended"]
    assert [v["view"] for v in ended[0]["job"]["views"]] == ["front", "left"]
    assert validate_glb(out / "cat.glb")["numErrors"] == 0

    ball = trimesh.creation.icosphere(subdivisions=2, radius=15.0)
    mesh = tmp_path / "ball.ply"
    mesh.write_bytes(ball.export(file_type="ply"))
    done = run("texture-mesh", str(mesh), "--view", f"front={photo_file}", "--view",
               f"back={left}", "--url", service.url, "-o", str(out), "--format", "glb",
               "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    ended = [e for e in json_lines(done.stdout) if e["type"] == "ended"]
    assert ended[0]["job"]["generator"] == "given_mesh"
    assert validate_glb(out / "ball.glb")["numErrors"] == 0
    model = trimesh.load(out / "ball.glb", force="mesh")
    np.testing.assert_allclose(model.bounds * 1000.0, ball.bounds, atol=1e-2)
