"""The Ray dashboard as a new user meets it: a token dialog, then the Serve page.

The suite's Ray starts without the dashboard's web modules (``include_dashboard=False``
in tests/serving.py: they are several processes, too many for every test run on a small
machine), so this module starts one more dashboard process of its own against the
session's cluster, on a free port, and stops it (its process group) when done. Ray's
token authentication is on for the session's local cluster, as it is for ``make run``;
the token is what ``ray get-auth-token`` prints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.studio_page import SCREENSHOTS
from tests.serving import REPO_ROOT, free_port, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

#: The session's application and the deployments its Serve page must list.
APP = "orfeas"
DEPLOYMENTS = ("Ingress", "BackgroundRemoval", "ShapeTexture", "MeshTools")


def auth_token() -> str:
    """The cluster's token, as a user gets it: ``ray get-auth-token``."""
    ray_cli = Path(sys.executable).with_name("ray")
    printed = subprocess.run(
        [str(ray_cli), "get-auth-token"], capture_output=True, text=True, timeout=60, check=True
    )
    token = printed.stdout.strip()
    assert token, printed.stderr
    return token


@pytest.fixture(scope="module")
def dashboard(service: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Ray dashboard (with its web page) on the session's cluster; yields its address."""
    import ray

    node = ray._private.worker.global_worker.node
    port = free_port()
    logs = tmp_path_factory.mktemp("dashboard-logs")
    command = [
        sys.executable,
        str(Path(ray.__file__).parent / "dashboard" / "dashboard.py"),
        "--host=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--temp-dir={node.get_temp_dir_path()}",
        f"--log-dir={logs}",
        f"--session-dir={node.get_session_dir_path()}",
        f"--gcs-address={node.gcs_address}",
        f"--cluster-id-hex={node.cluster_id.hex()}",
        f"--node-ip-address={node.node_ip_address}",
        "--logging-filename=",
    ]
    with open(logs / "dashboard.out", "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO_ROOT
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def serving() -> bool:
            assert process.poll() is None, (logs / "dashboard.out").read_text()[-4000:]
            try:
                return httpx.get(f"{url}/api/authentication_mode", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(serving, 120, "the Ray dashboard answering", interval_s=1.0)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


def test_the_dashboard_asks_for_the_token_and_then_shows_the_serve_application(
    chromium: Any, dashboard: str
) -> None:
    mode = httpx.get(f"{dashboard}/api/authentication_mode", timeout=10).json()
    assert mode == {"authentication_mode": "token"}
    assert httpx.get(f"{dashboard}/api/serve/applications/", timeout=10).status_code == 401

    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        page.goto(f"{dashboard}/#/serve")
        page.get_by_text("Authentication Token Required").wait_for()
        page.get_by_placeholder("Enter your authentication token").fill(auth_token())
        page.get_by_role("button", name="Submit").click()
        page.get_by_text("Authentication Token Required").wait_for(state="hidden")
        page.goto(f"{dashboard}/#/serve/applications/{APP}")
        for deployment in DEPLOYMENTS:
            page.get_by_text(deployment, exact=True).first.wait_for()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "ray-dashboard-serve.png"))
    finally:
        context.close()
