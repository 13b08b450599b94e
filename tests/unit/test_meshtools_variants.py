"""Variant ids: one content address per (job, base, operation, canonical parameters)."""

from __future__ import annotations

import pytest

from serve_app.contracts.meshtools import CustomMaterial
from serve_app.contracts.variants import is_variant_id
from serve_app.meshtools.materials import resolve_material
from serve_app.meshtools.variants import VariantOperation, variant_id
from serve_app.storage import ArtifactStore

JOB, OTHER_JOB = "a" * 32, "b" * 32
BASE, OTHER_BASE = "c" * 64, "d" * 64
OPTIMIZE, MATERIAL = VariantOperation.OPTIMIZE, VariantOperation.MATERIAL


def test_same_recipe_same_id_whatever_the_key_order_or_float_noise():
    a = variant_id(JOB, BASE, OPTIMIZE, {"target_faces": 5000, "repair": True})
    b = variant_id(JOB, BASE, OPTIMIZE, {"repair": True, "target_faces": 5000})
    assert a == b and is_variant_id(a)
    m1 = variant_id(JOB, BASE, MATERIAL, {"metallic": 0.3, "roughness": 1})
    m2 = variant_id(JOB, BASE, MATERIAL, {"metallic": 0.1 + 0.2, "roughness": 1.0})
    assert m1 == m2


def test_every_part_of_the_recipe_changes_the_id():
    params = {"target_faces": 5000, "repair": True}
    ids = {
        variant_id(JOB, BASE, OPTIMIZE, params),
        variant_id(OTHER_JOB, BASE, OPTIMIZE, params),
        variant_id(JOB, OTHER_BASE, OPTIMIZE, params),
        variant_id(JOB, BASE, MATERIAL, params),
        variant_id(JOB, BASE, OPTIMIZE, {**params, "target_faces": 5001}),
        variant_id(JOB, BASE, OPTIMIZE, {**params, "repair": False}),
    }
    assert len(ids) == 6


def test_resolved_materials_make_the_parameters():
    metal = resolve_material("metal").model_dump(mode="json", exclude={"description"})
    custom = resolve_material(CustomMaterial(base_color="#C0392B", metallic=1, roughness=0.3))
    same = resolve_material(CustomMaterial(base_color="#c0392b", metallic=1.0, roughness=0.3))
    dump = custom.model_dump(mode="json", exclude={"description"})
    assert variant_id(JOB, BASE, MATERIAL, dump) == variant_id(
        JOB, BASE, MATERIAL, same.model_dump(mode="json", exclude={"description"})
    )
    assert variant_id(JOB, BASE, MATERIAL, metal) != variant_id(JOB, BASE, MATERIAL, dump)


def test_a_variant_id_is_a_store_key():
    vid = variant_id(JOB, BASE, OPTIMIZE, {"target_faces": 100, "repair": True})
    assert ArtifactStore("/nonexistent").mesh_path(vid).name == f"{vid}.npz"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        variant_id(JOB, BASE, MATERIAL, {"metallic": bad})
