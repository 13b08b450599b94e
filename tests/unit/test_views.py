"""Photos from several views: the upload's checks, the job's record, the cache key, and
background removal and building from every view."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from serve_app.contracts.params import GenerationParams
from serve_app.contracts.stages import Stage
from serve_app.contracts.views import EXTRA_VIEWS, VIEW_NAMES, ViewName, check_view_name
from serve_app.errors import ValidationFailedError
from serve_app.pipeline.background import RembgRemover, remove_views
from serve_app.registry.cache import cache_key
from serve_app.storage import ArtifactStore, sha256_hex
from tests.support import ellipse_cutout, encode, models_dir, photo
from tests.unit.inprocess import (
    GENERATOR_VERSION,
    InProcessService,
    app_config,
    in_process_service,
    tetrahedron,
)

PHOTOS = {"image": "chelsea", "left": "coffee", "back": "astronaut", "top": "rocket"}


def small(name: str) -> bytes:
    return encode(photo(name)[:96, :128])


@pytest.fixture
def service(tmp_path: Path) -> Iterator[InProcessService]:
    with in_process_service(app_config(tmp_path)) as service:
        yield service


def post(service: InProcessService, fields: list[tuple[str, bytes]]) -> Any:
    files = [(name, (f"{name}.png", data, "image/png")) for name, data in fields]
    return service.http.post("/api/upload-image", files=files)


def test_the_view_names_are_the_six_cameras_front_first() -> None:
    assert [str(v) for v in VIEW_NAMES] == ["front", "left", "back", "right", "top", "bottom"]
    assert ViewName.FRONT not in EXTRA_VIEWS and len(EXTRA_VIEWS) == 5
    assert check_view_name("left") is ViewName.LEFT
    with pytest.raises(ValidationFailedError, match="'side'"):
        check_view_name("side")


def test_an_upload_with_views_lists_them_front_first_with_their_hashes(
    service: InProcessService,
) -> None:
    fields = [(name, small(p)) for name, p in PHOTOS.items()]
    answer = post(service, fields[::-1])  # any field order; listed in the views' order
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = [
        ("front", sha256_hex(small("chelsea"))),
        ("left", sha256_hex(small("coffee"))),
        ("back", sha256_hex(small("astronaut"))),
        ("top", sha256_hex(small("rocket"))),
    ]
    assert [(v["view"], v["sha256"]) for v in body["views"]] == expected
    assert body["sha256"] == expected[0][1]
    status = service.http.get(f"/api/job-status/{body['job_id']}").json()
    assert [(v["view"], v["sha256"]) for v in status["views"]] == expected
    # The files are kept, as uploads are, and the job's manifest names them.
    store = ArtifactStore(service.config.storage.root)
    upload = store.job_upload(body["job_id"])
    assert upload is not None and [str(v) for v in upload.view_names()] == [
        "front",
        "left",
        "back",
        "top",
    ]
    assert store.read_upload(upload.views[0].sha256) == small("coffee")


def test_a_single_photo_lists_only_its_front(service: InProcessService) -> None:
    body = post(service, [("image", small("chelsea"))]).json()
    assert [v["view"] for v in body["views"]] == ["front"]


@pytest.mark.parametrize(
    ("fields", "status", "named"),
    [
        ([("image", "chelsea"), ("side", "coffee")], 422, "side"),
        ([("image", "chelsea"), ("front", "coffee")], 422, "front"),
        ([("image", "chelsea"), ("left", "coffee"), ("left", "rocket")], 422, "left"),
        ([("image", "chelsea"), ("left", None)], 415, "left"),
        ([("image", "chelsea"), ("back", b"")], 400, "back"),
        (
            [("image", "chelsea"), *((v, "coffee") for v in EXTRA_VIEWS), ("extra", "rocket")],
            422,
            "extra",
        ),
    ],
)
def test_a_bad_view_is_refused_with_its_name(
    service: InProcessService, fields: list[tuple[str, Any]], status: int, named: str
) -> None:
    def content(value: Any) -> bytes:
        if value is None:
            return b"this is not an image, only text"
        return value if isinstance(value, bytes) else small(value)

    answer = post(service, [(name, content(v)) for name, v in fields])
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert named in error["message"]
    assert service.http.get("/api/jobs").json()["total"] == 0  # nothing was admitted


def test_the_cache_key_includes_the_views_hashes_and_is_unchanged_without() -> None:
    params = GenerationParams(quality=3)
    single = cache_key("a" * 64, params, "u2netp", "inflate", "v1")
    assert cache_key("a" * 64, params, "u2netp", "inflate", "v1", views={}) == single
    left = cache_key("a" * 64, params, "u2netp", "inflate", "v1", views={"left": "b" * 64})
    right = cache_key("a" * 64, params, "u2netp", "inflate", "v1", views={"right": "b" * 64})
    assert len({single, left, right}) == 3


def test_a_run_with_views_is_keyed_by_them(service: InProcessService) -> None:
    """A run completes from the cache only under the key that includes its views."""
    job_id = post(service, [("image", small("chelsea")), ("left", small("coffee"))]).json()[
        "job_id"
    ]

    async def seed() -> None:
        await service.registry.report_generator("inflate", GENERATOR_VERSION)
        key = cache_key(
            sha256_hex(small("chelsea")),
            GenerationParams(quality=2),
            service.config.pipeline.background_model,
            "inflate",
            GENERATOR_VERSION,
            views={"left": sha256_hex(small("coffee"))},
            texture=service.config.pipeline.texture_version,
        )
        ArtifactStore(service.config.storage.root).put_mesh(key, tetrahedron().to_bytes())

    service.run(seed)
    answer = service.http.post("/api/generate-3d", json={"job_id": job_id, "quality": 2})
    assert answer.status_code == 202, answer.text
    service.wait_view(lambda: getattr(service.view.peek(job_id), "status", None) == "completed")
    status = service.http.get(f"/api/job-status/{job_id}").json()
    assert status["cached"] is True and [v["view"] for v in status["views"]] == ["front", "left"]


@pytest.fixture(scope="module")
def remover() -> RembgRemover:
    return RembgRemover(models_dir())


def test_views_are_cut_out_as_one_batch_and_a_cut_out_keeps_its_alpha(
    remover: RembgRemover,
) -> None:
    cutout = ellipse_cutout()
    images = {
        "front": Image.fromarray(photo("chelsea")),
        "left": Image.fromarray(cutout, "RGBA"),
    }
    reports: list[tuple[Stage, float]] = []
    cutouts = remove_views(remover, images, lambda s, f: reports.append((s, f)))
    assert list(cutouts) == ["front", "left"]
    assert cutouts["front"].source == "model"
    assert cutouts["left"].source == "alpha"
    assert np.array_equal(cutouts["left"].mask, cutout[..., 3] > 127)
    fractions = [f for s, f in reports if s is Stage.BACKGROUND_REMOVAL]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
