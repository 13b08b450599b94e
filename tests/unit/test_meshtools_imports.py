"""The ingress stays light: the mesh-tool routes import no mesh or rendering library."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO


def test_the_api_imports_neither_trimesh_nor_vtk_nor_pymeshlab() -> None:
    code = (
        "import sys, serve_app.api, serve_app.api.routers.meshtools, serve_app.meshtools.analyze, "
        "serve_app.meshtools.materials, serve_app.meshtools.variants; "
        "heavy = {'trimesh', 'vtkmodules', 'pymeshlab', 'torch', 'scipy'} & set(sys.modules); "
        "sys.exit(f'imported {heavy}' if heavy else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stderr + result.stdout
