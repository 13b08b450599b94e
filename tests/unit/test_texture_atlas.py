"""The texels an atlas covers: each texel inside a face holds it with the barycentrics of its
centre, the rim within reach of a face holds the nearest one, and nothing farther is held."""

from __future__ import annotations

import time

import numpy as np

from serve_app.pipeline.texture.atlas import EDGE_REACH, Atlas, rasterize

SIDE = 64


def atlas_of(triangles: np.ndarray) -> Atlas:
    """An atlas of separate triangles given in texel space ((m, 3, 2): x = column, y = row)."""
    m = len(triangles)
    pts = triangles.reshape(-1, 2)
    uv = np.column_stack([pts[:, 0] / SIDE, 1.0 - pts[:, 1] / SIDE]).astype(np.float32)
    return Atlas(
        vertices=np.zeros((3 * m, 3), dtype=np.float32),
        faces=np.arange(3 * m, dtype=np.int64).reshape(m, 3),
        uv=uv,
        source=np.arange(3 * m, dtype=np.int64),
        side=SIDE,
    )


def edge_distances(tri: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance of points to each edge's line of one triangle, positive inside: (k, 3)."""
    a, b, c = tri
    area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    out = []
    for p, q in ((b, c), (c, a), (a, b)):
        cross = (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0])
        out.append(np.sign(area) * cross / np.hypot(*(q - p)))
    return np.column_stack(out)


def test_texels_inside_faces_and_their_rim_and_nothing_else():
    triangles = np.array(
        [
            [[4.2, 3.7], [30.5, 6.1], [10.3, 28.9]],  # a plain triangle
            [[36.0, 10.0], [60.0, 12.5], [37.0, 13.0]],  # a sliver, counter-clockwise
            [[40.0, 30.0], [40.0, 60.0], [62.0, 45.0]],  # on its side, clockwise in texels
            [[10.3, 28.9], [30.5, 6.1], [30.2, 30.4]],  # shares an edge with the first
        ]
    )
    texels = rasterize(atlas_of(triangles))
    flat = texels.rows * SIDE + texels.cols
    assert len(np.unique(flat)) == len(flat)  # each texel once
    rows, cols = np.divmod(np.arange(SIDE * SIDE), SIDE)
    x, y = cols + 0.5, rows + 0.5
    dist = np.stack([edge_distances(t, x, y).min(axis=1) for t in triangles], axis=1)
    held = np.full(SIDE * SIDE, -1)
    held[flat] = texels.face
    inside = dist.max(axis=1) > 1e-6
    # a centre inside a face is held by it (shared edges aside), with its own barycentrics
    assert (held[inside] == dist[inside].argmax(axis=1)).all()
    np.testing.assert_allclose(texels.bary.sum(axis=1), 1.0, atol=1e-5)
    assert (texels.bary >= 0).all()
    centre = np.einsum("kj,kjd->kd", texels.bary, triangles[texels.face])
    at_centre = dist[flat, texels.face] >= 0
    np.testing.assert_allclose(
        centre[at_centre],
        np.column_stack([texels.cols + 0.5, texels.rows + 0.5])[at_centre],
        atol=1e-3,
    )
    # the rim: within reach of the face it holds, and the texels beyond every face's reach
    # are not held
    assert (dist[flat, texels.face] >= -EDGE_REACH - 1e-6).all()
    assert (held[dist.max(axis=1) < -EDGE_REACH - 1e-6] == -1).all()
    rim = (dist.max(axis=1) < -1e-6) & (dist.max(axis=1) > -EDGE_REACH + 1e-6)
    assert (held[rim] >= 0).mean() > 0.9  # the sliver's tips may lie beyond a neighbour's
    # the sliver, thinner than a texel, holds the texels along it
    assert (texels.face == 1).sum() >= 20


def test_the_kept_process_unwraps_as_this_one_and_starts_with_the_baker():
    from serve_app.pipeline.texture import Baker
    from serve_app.pipeline.texture.atlas import PendingAtlas, unwrap_here
    from tests.texture_objects import box

    assert Baker().ready.result(timeout=120) is None
    obj = box()
    here = unwrap_here(obj.vertices, obj.faces, 256)
    there = PendingAtlas(obj.vertices, obj.faces, 256).result()
    np.testing.assert_array_equal(there.faces, here.faces)
    np.testing.assert_array_equal(there.uv, here.uv)
    np.testing.assert_array_equal(there.source, here.source)
    assert len(there.faces) == len(obj.faces)
    np.testing.assert_allclose(there.vertices[there.faces], obj.vertices[obj.faces], atol=1e-6)


def ended(pid: int) -> bool:
    """The process is gone, or dead and not yet reaped (Linux's /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][0] in "ZX"
    except FileNotFoundError:
        return True


def test_a_cancel_ends_the_wait_for_the_atlas_and_its_child_then_the_next_bake_works():
    import pytest

    from serve_app.errors import JobCancelledError
    from serve_app.pipeline.texture import atlas as atlas_module
    from serve_app.pipeline.texture.atlas import PendingAtlas
    from serve_app.pipeline.types import CancelToken
    from tests.texture_objects import box, torus

    big = torus(major_sections=400, minor_sections=150)  # 120k faces: seconds of xatlas
    pending = PendingAtlas(big.vertices, big.faces, 2048)
    child = next(iter(pending._pool._processes.values()))
    deadline = time.monotonic() + 60
    while not pending._future.running():  # in xatlas's hands (a call not started is dropped)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelledError):
        pending.result(token)
    deadline = time.monotonic() + 30
    while not ended(child.pid):  # killed while xatlas worked, not left to finish
        assert time.monotonic() < deadline, "the child went on with the cancelled atlas"
        time.sleep(0.05)
    assert atlas_module._UNWRAPPER is not pending._pool
    obj = box()
    atlas = PendingAtlas(obj.vertices, obj.faces, 256).result(CancelToken())
    assert len(atlas.faces) == len(obj.faces)


def test_a_cancel_leaves_the_child_to_another_runs_atlas_waiting_behind_it():
    import pytest

    from serve_app.errors import JobCancelledError
    from serve_app.pipeline.texture.atlas import PendingAtlas
    from serve_app.pipeline.types import CancelToken
    from tests.texture_objects import box, torus

    big = torus(major_sections=300, minor_sections=100)
    cancelled = PendingAtlas(big.vertices, big.faces, 1024)
    obj = box()
    other = PendingAtlas(obj.vertices, obj.faces, 256)  # the same child's next call
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelledError):
        cancelled.result(token)
    atlas = other.result(CancelToken())  # not lost with the cancelled one
    assert len(atlas.faces) == len(obj.faces)
