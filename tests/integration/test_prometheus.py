"""Prometheus scrapes the running service for real; the Grafana dashboard queries real series.

Debian's ``prometheus`` runs with ``configs/prometheus.yml`` as committed, except that each
scrape job's targets are pointed at this test's service (the ``orfeas`` job: the service's
``/metrics``; the ``ray`` job: the local Ray node's metrics endpoint, which Ray serves on
every interface). It listens on 127.0.0.1, keeps its data in a temporary directory and is
stopped by the test.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image

from tests.client import Api
from tests.serving import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = REPO_ROOT / "configs" / "prometheus.yml"
DASHBOARD = REPO_ROOT / "configs" / "grafana-dashboard.json"
#: How long Prometheus may take to show what the service counted (two scrape intervals,
#: plus Ray's own export period for the ``ray`` job).
SCRAPE_WAIT_S = 75.0
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", re.MULTILINE)


def _binary(name: str) -> str:
    """A Debian binary, or a skip (a failure in CI, whose set-up installs it)."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is missing: `scripts/setup.sh prometheus` installs Debian's prometheus"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def ray_metrics_address() -> str:
    """``127.0.0.1:<port>`` of the local Ray node's metrics endpoint."""
    import ray

    ports = [n["MetricsExportPort"] for n in ray.nodes() if n["Alive"] and n["MetricsExportPort"]]
    assert ports, "the local Ray node exports no metrics"
    return f"127.0.0.1:{ports[0]}"


def targeted_config(directory: Path, service: str, ray_node: str) -> Path:
    """A copy of configs/prometheus.yml whose scrape targets are this test's."""
    config = yaml.safe_load(CONFIG.read_text())
    targets = {"orfeas": service, "ray": ray_node}
    for job in config["scrape_configs"]:
        name = job["job_name"]
        assert name in targets, f"configs/prometheus.yml has a scrape job {name!r} unknown here"
        for static in job.get("static_configs", []):
            static["targets"] = [targets[name]]
        for file_sd in job.get("file_sd_configs", []):
            listing = directory / f"{name}-targets.json"
            # The same shape as the file Ray writes for its nodes.
            listing.write_text(json.dumps([{"labels": {"job": name}, "targets": [targets[name]]}]))
            file_sd["files"] = [str(listing)]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def check_config(path: Path) -> None:
    result = subprocess.run(
        [_binary("promtool"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"promtool rejects {path}:\n{result.stdout}{result.stderr}"


@pytest.fixture
def prometheus(tmp_path: Path, api: Api) -> Iterator[httpx.Client]:
    """Prometheus scraping the service, on 127.0.0.1; yields a client of its HTTP API."""
    binary = _binary("prometheus")
    check_config(CONFIG)
    service = api.service.url.removeprefix("http://")
    config = targeted_config(tmp_path, service, ray_metrics_address())
    check_config(config)
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while not _ready(client):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Prometheus did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.25)
            yield client
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/-/ready").status_code == 200
    except httpx.TransportError:
        return False


def query(client: httpx.Client, promql: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/query", params={"query": promql})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def total(client: httpx.Client, promql: str) -> float:
    return sum(float(sample["value"][1]) for sample in query(client, promql))


def wait_for(predicate: Any, what: str, timeout_s: float = SCRAPE_WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s:.0f} s")
        time.sleep(1.0)


def service_total(api: Api, name: str) -> float:
    """The sum of ``name``'s samples on the service's own ``/metrics``."""
    text = api.client.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


def test_prometheus_scrapes_the_service_and_ray(prometheus: httpx.Client, api: Api) -> None:
    before = service_total(api, "orfeas_jobs_completed_total")
    job_id = api.upload(api.unique_photo())
    assert api.generate(job_id, format="glb", quality=3).status_code == 202
    assert api.wait(job_id)["status"] == "completed"

    completed = 'sum(orfeas_jobs_completed_total{job="orfeas"})'
    wait_for(
        lambda: total(prometheus, completed) >= before + 1,
        f"Prometheus did not show the completed job ({completed})",
    )
    bucket = 'orfeas_stage_duration_seconds_bucket{job="orfeas", stage="shape_generation"}'
    buckets = query(prometheus, bucket)
    assert {s["metric"]["le"] for s in buckets} >= {"0.01", "600.0", "+Inf"}, buckets
    assert total(prometheus, bucket.replace("}", ', le="+Inf"}')) >= 1
    p50 = query(prometheus, f"histogram_quantile(0.5, sum by (le) ({bucket}))")
    assert p50 and float(p50[0]["value"][1]) >= 0, p50

    # Ray's endpoint carries the same counts (recorded through ray.serve.metrics).
    wait_for(
        lambda: total(prometheus, 'sum(ray_orfeas_jobs_completed_total{job="ray"})') >= 1,
        "Prometheus did not show ray_orfeas_jobs_completed_total from Ray's endpoint",
    )
    targets = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
    assert {t["labels"]["job"] for t in targets} == {"orfeas", "ray"}
    assert all(t["health"] == "up" for t in targets), targets


# -- the Grafana dashboard -------------------------------------------------------------------


def dashboard_expressions() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template queries."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text()))
    return found


def metric_names(expression: str) -> set[str]:
    """The metric names an expression selects: bare names, and ``__name__`` matchers of the
    form ``"(ray_)?name"`` (both sources) or ``"name"``.
    """
    names: set[str] = set()
    for matcher in re.findall(r'__name__\s*=~?\s*"([^"]*)"', expression):
        base = matcher.removeprefix("(ray_)?")
        assert METRIC_NAME.fullmatch(base), f"a name matcher this test cannot read: {matcher!r}"
        names.add(base)
        if base != matcher:
            names.add("ray_" + base)
    unquoted = re.sub(r'"[^"]*"', '""', expression)
    names |= set(re.findall(r"(?<![\w$])((?:ray_|orfeas_)[a-zA-Z0-9_:]*)", unquoted))
    return names


def run_every_outcome(api: Api) -> None:
    """Jobs that complete, hit the cache, fail and are cancelled, so each counter exists."""
    photo = api.unique_photo()
    done = api.upload(photo)
    assert api.generate(done, format="glb", quality=3).status_code == 202
    assert api.wait(done)["status"] == "completed"
    assert api.generate(done, format="glb", quality=3).status_code == 202
    assert api.wait(done)["cached"] is True

    blank = io.BytesIO()
    Image.new("RGB", (256, 256), (128, 128, 128)).save(blank, format="PNG")
    failed = api.upload(blank.getvalue())
    assert api.generate(failed, format="glb", quality=3).status_code == 202
    assert api.wait(failed)["status"] == "failed"

    for _ in range(3):
        cancelled = api.upload(api.unique_photo())
        assert api.generate(cancelled, format="glb", quality=10).status_code == 202
        if api.client.post(f"/api/jobs/{cancelled}/cancel").status_code == 200:
            break
    else:
        pytest.fail("every quality-10 job ended before its cancel arrived")


def exposed_names(text: str) -> set[str]:
    return set(METRIC_LINE.findall(text))


def test_dashboard_queries_only_series_that_exist(api: Api) -> None:
    expressions = dashboard_expressions()
    assert len(expressions) >= 10
    wanted: set[str] = set()
    for expression in expressions:
        names = metric_names(expression)
        assert names, f"no metric name found in {expression!r}"
        wanted |= names

    run_every_outcome(api)
    service = exposed_names(api.client.get("/metrics").text)
    missing = sorted(n for n in wanted if not n.startswith("ray_") and n not in service)
    assert not missing, f"the dashboard queries series /metrics does not have: {missing}"

    ray_wanted = {n for n in wanted if n.startswith("ray_")}
    ray_url = f"http://{ray_metrics_address()}/metrics"

    def ray_missing() -> list[str]:
        return sorted(ray_wanted - exposed_names(httpx.get(ray_url, timeout=30).text))

    try:
        wait_for(lambda: not ray_missing(), "Ray's endpoint did not show every series")
    except AssertionError:
        pytest.fail(f"the dashboard queries series Ray's endpoint does not have: {ray_missing()}")
