"""The service's modules import each other without cycles, in layers, and the registry is one
package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("serve_app", "deployments")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports anywhere (top level, functions, type checks)."""
    modules = {
        module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle (as a path), found by depth-first search."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_module_imports_another_that_imports_it_back() -> None:
    graph = import_graph()
    assert "serve_app.registry.actor" in graph and graph["serve_app.registry.supervisor"]
    assert cycles(graph) == []


def test_the_job_registry_is_one_package() -> None:
    graph = import_graph()
    registry = {m for m in graph if m.startswith("serve_app.registry.")}
    assert {m.rsplit(".", 1)[1] for m in registry} >= {
        "jobs",
        "table",
        "journal",
        "leases",
        "retention",
        "feeds",
        "eta",
        "monitor",
        "supervisor",
        "workers",
        "actor",
        "client",
        "view",
    }
    # Nothing in the registry reaches back into the API, the deployments or the pipeline's
    # models; only the pipeline's small shared types (and the text-to-image parameters).
    for module in registry:
        outside = {
            m
            for m in graph[module]
            if not m.startswith(("serve_app.registry", "serve_app.contracts"))
        }
        assert not {m for m in outside if m.startswith(("serve_app.api", "deployments"))}
        assert outside <= {
            "serve_app",
            "serve_app.config",
            "serve_app.errors",
            "serve_app.metrics",
            "serve_app.pipeline.text_params",
            "serve_app.pipeline.types",
            "serve_app.pipeline.export",
            "serve_app.config_policies",
            "serve_app.registry",
            "serve_app.ray_errors",
            "serve_app.storage",
            "serve_app.webhooks.config",
            "serve_app.webhooks.outbox",
            "serve_app.webhooks.records",
        }, (module, outside)


#: The layers, lowest first: a module may import its own layer and those below, never one
#: above. A package name stands for the package and every module in it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("serve_app", "serve_app.errors"),
    ("serve_app.contracts",),
    ("serve_app.pipeline",),
    ("serve_app.meshtools",),
    (
        "serve_app.config",
        "serve_app.config_policies",
        "serve_app.metrics",
        "serve_app.ratelimit",
        "serve_app.ray_errors",
        "serve_app.storage",
        "serve_app.webhooks",
    ),
    ("serve_app.schemas", "serve_app.work"),
    ("serve_app.client", "serve_app.commands"),
    ("serve_app.registry",),
    ("serve_app.api", "serve_app.web"),
    ("serve_app.app", "serve_app.cli", "serve_app.__main__", "deployments"),
)


def layer_of(module: str) -> int:
    """The layer of ``module``: that of the longest layer name it is or lies under."""
    best, level = "", -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best, level = name, index
    assert level >= 0, f"{module} is in no layer: add it to LAYERS"
    return level


def test_no_module_imports_a_higher_layer() -> None:
    graph = import_graph()
    upward = sorted(
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )
    assert upward == []


def test_the_contracts_import_nothing_of_the_project_but_the_errors() -> None:
    graph = import_graph()
    contracts = {m for m in graph if m.startswith("serve_app.contracts")}
    assert "serve_app.contracts.jobs" in contracts
    assert graph["serve_app.errors"] == set()
    for module in contracts:
        outside = {m for m in graph[module] if not m.startswith("serve_app.contracts")}
        assert outside <= {"serve_app.errors"}, (module, outside)


def modules_loaded_by(module: str) -> set[str]:
    """Every module a fresh interpreter holds after importing ``module``."""
    code = f"import sys, {module}; print(*sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    return set(out.split())


def test_importing_the_client_loads_no_numpy_trimesh_or_torch() -> None:
    loaded = modules_loaded_by("serve_app.client")
    assert "serve_app.client.sync" in loaded
    assert not {"numpy", "trimesh", "torch", "scipy", "PIL"} & loaded
