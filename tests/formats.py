"""Readers of the printing and AR formats that are not ours: lib3mf for 3MF, USD for USDZ."""

from __future__ import annotations

from pathlib import Path

import lib3mf


def lib3mf_model(data: bytes, tmp_path: Path) -> lib3mf.Model:
    """The 3MF read by lib3mf (the 3MF Consortium's library) in strict mode."""
    path = tmp_path / "model.3mf"
    path.write_bytes(data)
    model = lib3mf.get_wrapper().CreateModel()
    reader = model.QueryReader("3mf")
    reader.SetStrictModeActive(True)
    reader.ReadFromFile(str(path))
    warnings = [reader.GetWarning(i) for i in range(reader.GetWarningCount())]
    assert warnings == []
    return model


def only_mesh(model: lib3mf.Model) -> lib3mf.MeshObject:
    meshes = model.GetMeshObjects()
    found = []
    while meshes.MoveNext():
        found.append(meshes.GetCurrentMeshObject())
    assert len(found) == 1
    return found[0]


def base_materials(model: lib3mf.Model) -> list[tuple[str, tuple[int, int, int]]]:
    groups = model.GetBaseMaterialGroups()
    found = []
    while groups.MoveNext():
        group = groups.GetCurrentBaseMaterialGroup()
        for pid in group.GetAllPropertyIDs():
            c = group.GetDisplayColor(pid)
            found.append((group.GetName(pid), (c.Red, c.Green, c.Blue)))
    return found


def colour_group_sizes(model: lib3mf.Model) -> list[int]:
    groups = model.GetColorGroups()
    sizes = []
    while groups.MoveNext():
        sizes.append(groups.GetCurrentColorGroup().GetCount())
    return sizes


def usd_errors(stage: object) -> list[str]:
    """Every validator USD registers (its compliance checks, usdz ones included), run."""
    from pxr import UsdValidation

    registry = UsdValidation.ValidationRegistry()
    context = UsdValidation.ValidationContext(registry.GetOrLoadAllValidators())
    return [
        f"{e.GetName()}: {e.GetMessage()}"
        for e in context.Validate(stage)
        if e.GetType() == UsdValidation.ValidationErrorType.Error
    ]


def open_usdz(data: bytes, tmp_path: Path) -> object:
    from pxr import Usd

    path = tmp_path / "model.usdz"
    path.write_bytes(data)
    return Usd.Stage.Open(str(path))
