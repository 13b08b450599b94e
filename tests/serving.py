"""A real local Ray Serve for the suites that need one: start it once, deploy apps on it."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from tests.support import models_dir

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_environment() -> dict[str, str]:
    """What the suite sets before Ray starts: ``configs/serve.env`` (as ``make run`` does),
    with Serve's fixed side ports (HAProxy stats and metrics, the fallback proxy) moved to
    free ones so a suite can run beside a ``make run`` on the same machine.
    """
    env: dict[str, str] = {}
    for line in (REPO_ROOT / "configs" / "serve.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            env[key.strip()] = value.strip()
    for key in (
        "RAY_SERVE_HAPROXY_STATS_PORT",
        "RAY_SERVE_HAPROXY_METRICS_PORT",
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
    ):
        env[key] = str(free_port())
    # A stopping ingress replica is drained for this long; the suite stops Serve once.
    env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = "1"
    return env


def apply_serve_environment() -> None:
    """Set :func:`serve_environment` in this process (before Ray or Serve is imported)."""
    for key, value in serve_environment().items():
        os.environ.setdefault(key, value)


#: Webhooks to a receiver on this machine (the tests' own), retried quickly.
WEBHOOK_SECRET = "integration-webhook-secret"
WEBHOOKS = {
    "secret": WEBHOOK_SECRET,
    "http_hosts": ["127.0.0.1"],
    "internal_hosts": ["127.0.0.1"],
    "first_backoff_s": 0.1,
    "max_backoff_s": 0.5,
    "timeout_s": 10,
}


def app_args(storage_root: Path) -> dict[str, Any]:
    """A small graph for a 2-core box: one replica each, fractional CPUs."""
    small = {"num_replicas": 1, "num_cpus": 0.25}
    return {
        "storage": {"root": str(storage_root)},
        "pipeline": {"models_dir": str(models_dir()), "device": "cpu"},
        "ingress": {**small, "max_ongoing_requests": 200},
        "background_removal": {**small, "max_ongoing_requests": 2},
        "shape_texture": {**small, "max_ongoing_requests": 1},
        "mesh_tools": {"deployment": {**small, "max_ongoing_requests": 2}},
        "webhooks": WEBHOOKS,
    }


#: The application with a text-to-image model, beside the session's default one.
TEXT_APP = "orfeas-text"
TEXT_PREFIX = "/text"


def text_app_args(storage_root: Path, model_path: Path) -> dict[str, Any]:
    """The small graph plus TextToImage on ``model_path`` (the tiny pipeline), on the CPU,
    with its own registry: few steps and small pictures by default, so runs are quick."""
    args = app_args(storage_root)
    args["registry"] = {"name": "job_registry_text"}
    args["text_to_image"] = {
        "model_path": str(model_path),
        "device": "cpu",
        "dtype": "float32",
        "default_steps": 3,
        "max_steps": 60,
        "max_pixels": 256 * 256,
        "deployment": {"num_replicas": 1, "num_cpus": 0.25, "max_ongoing_requests": 1},
    }
    return args


def start_ray_serve() -> int:
    """``ray.init`` and Serve's proxy on a free port; returns the port.

    8 logical CPUs: the suites deploy up to four small applications side by side (the
    default one, the text one, and one a module or the fault suite brings), each asking
    about 1.25 CPUs; their replicas mostly wait, so the two real cores are not the limit.
    """
    import ray
    from ray import serve

    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=8,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return port


def stop_ray_serve() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def deploy(args: dict[str, Any], name: str, route_prefix: str) -> None:
    """Build the application from ``args`` (as ``serve deploy`` would) and run it."""
    from ray import serve

    from serve_app.app import build_app
    from serve_app.config import AppConfig

    serve.run(build_app(AppConfig.model_validate(args)), name=name, route_prefix=route_prefix)


def wait_until(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(interval_s)
