"""The journal's record codec reads the documents the registry has written all along."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.params import GenerationParams
from serve_app.contracts.runs import RunRequest, RunResult, StoredImage, UploadInfo
from serve_app.contracts.stages import RunPlan, Stage
from serve_app.contracts.text import TextToImageParams
from serve_app.contracts.variants import VariantInfo
from serve_app.registry.jobs import JobRecord
from serve_app.registry.journal import decode_record, encode_record

A, B, C, D, E = ("a" * 64, "b" * 64, "c" * 64, "d" * 64, "e" * 64)

#: A completed model job with one variant, as the hand-written codec journaled it.
MODEL_JOB = (
    '{"status":"completed","stage":"export","upload":{"sha256":"' + A + '","size_bytes":1234,'
    '"media_type":"image/png"},"request":{"params":{"quality":3,"dimensions":{"width":null,'
    '"height":null,"depth":null},"seed":null,"steps":null,"guidance_scale":null,'
    '"octree_resolution":null,"num_chunks":null,"mc_level":null,"face_count":null},'
    '"format":"glb","generator":"inflate"},"result":{"artifact_key":"' + B + '",'
    '"formats":["glb"],"generator":"inflate","generator_version":"v1","timings":'
    '{"export":0.25},"cached":false,"watertight":true},"plan":"model","text":null,'
    '"image":null,"variants":{"' + C + '":{"variant_id":"' + C + '","operation":"decimate",'
    '"params":{"target_faces":500},"base":null,"faces":500,"watertight":false,'
    '"created_at":1500000000.0}},"job_id":"00000000000000000000000000000001","run":1,'
    '"progress":100.0,"eta_seconds":0.0,"error":null,"cancel_requested":false,'
    '"owner":"key-a","client":"key:abc","retries":0,"created_at":1796307142.5,'
    '"updated_at":1796307143,"started_at":1796307142.75,"finished_at":1796307143.0,'
    '"stage_durations":{"shape_generation":0.0},"stage_started_at":null}'
)

#: A text job whose picture was made, as the hand-written codec journaled it.
TEXT_JOB = (
    '{"status":"completed","stage":"text_to_image","upload":{"sha256":"' + E + '",'
    '"size_bytes":999,"media_type":"image/png"},"request":null,"result":null,"plan":"image",'
    '"text":{"prompt":"a red teapot","negative_prompt":null,"seed":7,"steps":4,'
    '"guidance_scale":null,"width":256,"height":256},"image":{"key":"' + D + '","upload":'
    '{"sha256":"' + E + '","size_bytes":999,"media_type":"image/png"},"params":{"prompt":'
    '"a red teapot","negative_prompt":null,"seed":7,"steps":4,"guidance_scale":null,'
    '"width":256,"height":256},"model_version":"tiny-1","cached":false,"seconds":0.5},'
    '"variants":{},"job_id":"00000000000000000000000000000002","run":1,"progress":100.0,'
    '"eta_seconds":0.0,"error":null,"cancel_requested":false,"owner":"key-b",'
    '"client":"key:b","retries":0,"created_at":1796307142.5,"updated_at":1796307143.0,'
    '"started_at":null,"finished_at":1796307143.0,"stage_durations":{},'
    '"stage_started_at":null}'
)


def model_job() -> JobRecord:
    return JobRecord(
        job_id="0" * 31 + "1",
        upload=UploadInfo(sha256=A, size_bytes=1234, media_type="image/png"),
        status=JobStatus.COMPLETED,
        run=1,
        stage=Stage.EXPORT,
        progress=100.0,
        eta_seconds=0.0,
        request=RunRequest(params=GenerationParams(quality=3), format="glb", generator="inflate"),
        result=RunResult(B, ("glb",), "inflate", "v1", {"export": 0.25}, watertight=True),
        owner="key-a",
        client="key:abc",
        created_at=1796307142.5,
        updated_at=1796307143.0,
        started_at=1796307142.75,
        finished_at=1796307143.0,
        stage_durations={"shape_generation": 0.0},
        variants={C: VariantInfo(C, "decimate", {"target_faces": 500}, None, 500, False, 1.5e9)},
    )


def text_job() -> JobRecord:
    text = TextToImageParams(prompt="a red teapot", seed=7, steps=4, width=256, height=256)
    picture = UploadInfo(sha256=E, size_bytes=999, media_type="image/png")
    return JobRecord(
        job_id="0" * 31 + "2",
        upload=picture,
        status=JobStatus.COMPLETED,
        run=1,
        stage=Stage.TEXT_TO_IMAGE,
        progress=100.0,
        eta_seconds=0.0,
        owner="key-b",
        client="key:b",
        created_at=1796307142.5,
        updated_at=1796307143.0,
        finished_at=1796307143.0,
        plan=RunPlan.IMAGE,
        text=text,
        image=StoredImage(D, picture, text, "tiny-1", False, 0.5),
    )


@pytest.mark.parametrize(("written", "expected"), [(MODEL_JOB, model_job), (TEXT_JOB, text_job)])
def test_a_journal_written_by_the_hand_written_codec_reads_back_field_for_field(
    written: str, expected: Callable[[], JobRecord]
) -> None:
    record = decode_record(written)
    assert record == expected()
    assert isinstance(record.status, JobStatus) and isinstance(record.plan, RunPlan)
    assert record.result is None or isinstance(record.result.formats, tuple)
    # What is written now is the same document (the same fields, the same values), its
    # uploads' view (front), other views (none) and mesh to texture (none) added.
    now = json.loads(encode_record(record))
    uploads = [now["upload"]] + ([now["image"]["upload"]] if now["image"] is not None else [])
    for upload in uploads:
        assert (upload.pop("view"), upload.pop("views"), upload.pop("mesh")) == ("front", [], None)
    assert now == json.loads(written)


def test_unknown_fields_are_ignored_and_missing_ones_take_their_defaults() -> None:
    document = json.loads(MODEL_JOB)
    document["written_by_a_newer_registry"] = True
    for name in ("retries", "client", "variants", "plan"):
        del document[name]
    record = decode_record(json.dumps(document))
    assert (record.retries, record.client, record.variants) == (0, None, {})
    assert record.plan is RunPlan.MODEL


def test_a_document_that_does_not_fit_a_record_is_refused() -> None:
    document = json.loads(MODEL_JOB)
    document["status"] = "exploded"
    with pytest.raises(ValueError):
        decode_record(json.dumps(document))
