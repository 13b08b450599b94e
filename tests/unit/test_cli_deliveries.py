"""``--callback-url`` and ``deliveries`` on the command line: usage errors exit 2 before
anything is sent; a job submitted with a callback posts to a real receiver, and
``deliveries`` lists its attempts for people and as JSON lines (the in-process API served
on 127.0.0.1)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve_app.client import OrfeasClient
from tests.meshes import binary_stl, cube
from tests.support import encode, photo
from tests.unit.inprocess import InProcessService, app_config, in_process_service
from tests.unit.test_cli_client import NOWHERE, exit_code
from tests.unit.test_client_callbacks import wait
from tests.unit.test_client_protocol import JOB_ID
from tests.unit.test_openapi_live import on_loopback
from tests.unit.test_webhook_delivery import webhooks
from tests.webhook_receiver import Receiver, running_receiver


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    made = {"photo": tmp_path / "cat.png", "mesh": tmp_path / "cube.stl"}
    made["photo"].write_bytes(encode(photo("chelsea")[:120, :160]))
    made["mesh"].write_bytes(binary_stl(*cube()))
    return made


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["submit", "{photo}", "--callback-url", "http:/"], "callback_url: String should have"),
        (["text", "a mug", "--callback-url", "x" * 2049], "callback_url: String should have"),
        (
            ["texture-mesh", "{mesh}", "--view", "front={photo}", "--callback-url", "h"],
            "callback_url: String should have",
        ),
        (["deliveries", "123"], "not a job id"),
        (["deliveries", JOB_ID.upper(), "--batch"], "not a batch id"),
        (["deliveries"], "the following arguments are required: ID"),
    ],
)
def test_callback_usage_errors_exit_2_and_say_what_is_wrong(
    argv: list[str], says: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(**files) for a in argv] + ["--url", NOWHERE]
    assert exit_code(args) == 2
    assert says in capsys.readouterr().err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[InProcessService, str, Receiver]]:
    """The in-process service (webhooks to 127.0.0.1 allowed), its URL and a receiver that
    refuses the first attempt."""
    config = app_config(tmp_path / "store", webhooks=webhooks())
    with (
        running_receiver(script=[500]) as receiver,
        in_process_service(config) as service,
        on_loopback(service) as url,
    ):
        yield service, url, receiver


def test_submit_with_a_callback_url_and_deliveries_list_its_attempts(
    served: tuple[InProcessService, str, Receiver],
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service, url, receiver = served
    service.seed_cache(files["photo"].read_bytes(), quality=2)
    hook = receiver.url("/cli")
    argv = ["submit", str(files["photo"]), "--quality", "2", "-o", str(tmp_path / "out")]
    assert exit_code([*argv, "--callback-url", hook, "--url", url, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    job_id = lines[-1]["jobs"][0]["job_id"]
    with OrfeasClient(url) as client:
        wait(lambda: [d for d in client.deliveries(job_id).deliveries if d.state == "delivered"])

    assert exit_code(["deliveries", job_id, "--url", url]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith("delivery ") and said[0].endswith(
        f" job.completed (run 1) to {hook}: delivered"
    )
    for code, line in zip((500, 200), said[1:], strict=True):  # a line per attempt
        at = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"
        assert re.fullmatch(rf"  {at} {code} \(\d+\.\d\d s\)", line), line

    assert exit_code(["deliveries", job_id, "--url", url, "--json"]) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (record["type"], record["target_id"], record["url"]) == ("delivery", job_id, hook)
    assert [a["status_code"] for a in record["attempts"]] == [500, 200]
    assert {p.headers["orfeas-delivery"] for p in receiver.posts()} == {record["delivery_id"]}


def test_deliveries_of_a_batch_none_and_an_unknown_job(
    served: tuple[InProcessService, str, Receiver], capsys: pytest.CaptureFixture[str]
) -> None:
    service, url, receiver = served
    quiet = service.completed_job()
    with OrfeasClient(url) as client:
        batch = client.batch(job_ids=[quiet], quality=2, callback_url=receiver.url("/b"))
        wait(lambda: client.batch_deliveries(batch.batch_id).deliveries)
    assert exit_code(["deliveries", batch.batch_id, "--batch", "--url", url]) == 0
    said = capsys.readouterr().out.splitlines()[0]
    assert said.startswith("delivery ") and f" batch.completed to {receiver.url('/b')}: " in said

    assert exit_code(["deliveries", quiet, "--url", url]) == 0
    assert capsys.readouterr().out == f"job {quiet}: no webhook deliveries\n"
    assert exit_code(["deliveries", "e" * 32, "--url", url, "--json"]) == 1
    (error,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (error["type"], error["status"], error["code"]) == ("error", 404, "job_not_found")
