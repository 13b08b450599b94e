"""The service's modules import each other without cycles, and the registry is one package."""

from __future__ import annotations

import ast
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
        }, (module, outside)
