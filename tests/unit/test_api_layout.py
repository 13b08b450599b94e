"""The API's routers are thin and separate: none imports another, the services import none."""

from __future__ import annotations

from tests.unit.test_import_graph import import_graph

ROUTERS = "serve_app.api.routers."


def test_no_router_imports_another_router() -> None:
    graph = import_graph()
    routers = {name for name in graph if name.startswith(ROUTERS)}
    assert len(routers) >= 7  # jobs, streams, health, text, variants, meshtools, batches
    for router in routers:
        assert not {m for m in graph[router] if m.startswith(ROUTERS)}, router


def test_only_the_app_imports_the_routers() -> None:
    graph = import_graph()
    importers = {
        name
        for name, imported in graph.items()
        if not name.startswith(ROUTERS) and any(m.startswith(ROUTERS) for m in imported)
    }
    assert importers == {"serve_app.api.app"}
