"""The client and the CLI against a service that requires API keys and limits their rate.

A keyed application runs beside the main one on the session's Ray Serve, at
``/client-keyed``: two accepted keys, a per-key rate limit (2 per second, bursts of 5) and
one active job per client, with ``Retry-After: 1`` on the registry's refusals. The 429s
here come from the service's own guard and registry, not from a stand-in.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serve_app.api.security import hash_key
from serve_app.client import NO_RETRIES, OrfeasClient, RateLimited, RetryPolicy, Unauthorized
from tests.client import photo
from tests.integration.test_cli import environment, json_lines
from tests.serving import app_args, deploy
from tests.support import REPO

pytestmark = pytest.mark.integration

APP = "orfeas-client-keyed"
PREFIX = "/client-keyed"
KEY = "client-key-3d7e1b09c4"
SHARE_KEY = "client-key-share-5a2c77"


@pytest.fixture(scope="module")
def keyed_url(ray_serve: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ray import serve

    args = app_args(tmp_path_factory.mktemp("client-keyed-storage"))
    args["registry"] = {
        "name": "job_registry_client_keyed",
        "max_active_per_client": 1,
        "retry_after_s": 1,
    }
    args["security"] = {
        "api_key_hashes": [hash_key(KEY), hash_key(SHARE_KEY)],
        "per_key_rate": {"rate_per_s": 2, "burst": 5},
    }
    deploy(args, name=APP, route_prefix=PREFIX)
    url = ray_serve + PREFIX
    try:
        assert httpx.get(f"{url}/api/jobs", timeout=30).status_code == 401
        yield url
    finally:
        serve.delete(APP)


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serve_app", *args], capture_output=True, text=True, cwd=REPO,
        env=environment(**env), timeout=240, check=False,
    )  # fmt: skip


def jobs_of(url: str, key: str) -> int:
    answer = httpx.get(f"{url}/api/jobs", headers={"X-API-Key": key}, timeout=30)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


def test_a_wrong_key_is_a_clear_error_and_exit_1(keyed_url: str, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(photo(unique=True))
    wrong = cli("submit", str(image), "--url", keyed_url, "--api-key-env", "MY_KEY",
                MY_KEY="not-the-right-key-0000")  # fmt: skip
    assert wrong.returncode == 1
    assert "did not accept the API key" in wrong.stderr and "(401 unauthorized)" in wrong.stderr
    none = cli("status", "f" * 32, "--url", keyed_url, "--json")
    (error,) = json_lines(none.stdout)
    assert none.returncode == 1 and error["status"] == 401 and error["code"] == "unauthorized"
    assert "needs an API key" in error["message"]
    unset = cli("status", "f" * 32, "--url", keyed_url, "--api-key-env", "NO_SUCH_VARIABLE")
    assert unset.returncode == 2 and "NO_SUCH_VARIABLE" in unset.stderr

    wrong_client = OrfeasClient(keyed_url, api_key="not-the-right-key-0000")
    with wrong_client as client, pytest.raises(Unauthorized) as raised:
        client.upload(image)
    assert (raised.value.status, raised.value.code) == (401, "unauthorized")

    right = cli("submit", str(image), "--url", keyed_url, "--api-key-env", "MY_KEY",
                "-o", str(tmp_path), "--format", "stl", "--quality", "1", MY_KEY=KEY)  # fmt: skip
    assert right.returncode == 0, right.stderr
    assert (tmp_path / "cat.stl").stat().st_size > 84


def test_a_429_is_retried_after_its_retry_after_and_creates_nothing_twice(
    keyed_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="serve_app.client")
    before = jobs_of(keyed_url, KEY)
    uploads = 0
    retries: list[str] = []
    # The bucket refills at 2 a second: on a busy machine the upload may reach it after a
    # token came back, and is then not refused at all; such a try says nothing, so it is
    # made again (each try's job is counted).
    for _ in range(3):
        image = photo(unique=True)
        eager = OrfeasClient(keyed_url, api_key=KEY, retry=NO_RETRIES)
        with eager, pytest.raises(RateLimited) as limited:  # empty the key's bucket
            for _ in range(20):
                eager.generators()
        assert limited.value.code == "rate_limited" and limited.value.retry_after == 1.0
        with OrfeasClient(keyed_url, api_key=KEY) as client:
            upload = client.upload(image)  # refused, waited for, sent again
        uploads += 1
        assert upload.status == "uploaded"
        retries = [
            r.getMessage() for r in caplog.records if "answered 429 rate_limited" in r.getMessage()
        ]
        if retries:
            break
    assert retries and "upload-image" in retries[0] and retries[0].endswith("in 1.0 s")
    assert jobs_of(keyed_url, KEY) == before + uploads  # one job a try: a refusal made none


def test_a_run_over_the_clients_share_is_retried_until_the_share_frees(
    keyed_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="serve_app.client")
    patient = RetryPolicy(max_attempts=200, max_wait_s=180.0)
    with OrfeasClient(keyed_url, api_key=SHARE_KEY, retry=patient) as client:
        first = client.submit(photo(unique=True), format="stl", quality=3)
        second = client.submit(photo(unique=True), format="stl", quality=1)  # waits its turn
        ended = [client.wait(first.job_id), client.wait(second.job_id)]
    refused = [
        r.getMessage()
        for r in caplog.records
        if "generate-3d answered 429 rate_limited" in r.getMessage()
    ]
    assert refused, "the second run was never refused: the share was not in force"
    assert [job.status for job in ended] == ["completed", "completed"]
    assert ended[0].finished_at and ended[1].started_at
    assert ended[1].started_at >= ended[0].finished_at
    assert ended[1].run == 1  # admitted once
