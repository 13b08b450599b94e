"""The service against its own OpenAPI document, over HTTP on 127.0.0.1: every operation
with its example and boundary values (tests/openapi_cases.py). No answer is a 5xx the
operation does not declare, every status is declared, what the document calls invalid is
a 4xx, and what it calls valid is never refused as malformed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from tests.meshes import binary_stl, cube
from tests.openapi_cases import Case, Document
from tests.support import encode, photo
from tests.unit.inprocess import InProcessService, app_config, in_process_service

pytestmark = pytest.mark.slow

#: The codes that say "your request is malformed": a request the document accepts must
#: never get one of them.
MALFORMED = {"validation_error", "invalid_input"}
#: At most this many requests per operation, and this long for the whole run.
MAX_CASES_PER_OPERATION = 60
BUDGET_S = 120.0


@contextlib.contextmanager
def on_loopback(service: InProcessService) -> Iterator[str]:
    """The in-process service's app also served by uvicorn on 127.0.0.1 (an ephemeral
    port), on the service's own event loop; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(service.http.app, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        tasks.append(asyncio.get_running_loop().create_task(server.serve(sockets=[sock])))
        while not server.started:
            await asyncio.sleep(0.01)

    async def stop() -> None:
        server.should_exit = True
        await tasks[0]

    service.run(start)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        service.run(stop)
        sock.close()


def send(http: httpx.Client, case: Case) -> httpx.Response:
    """``case`` over HTTP; a stream (events) is read to its end."""
    request = http.build_request(
        case.method.upper(),
        case.url,
        params=case.query,
        headers=case.headers,
        json=case.json if case.files is None else None,
        files=case.files,
        data=case.data,
    )
    response = http.send(request, stream=True)
    try:
        response.read()
    finally:
        response.close()
    return response


def problems(case: Case, response: httpx.Response, declared: set[str]) -> list[str]:
    status = response.status_code
    found = []
    if status >= 500 and not (status == 503 and "503" in declared):
        found.append("a server error")
    if str(status) not in declared and "default" not in declared:
        found.append("a status the operation does not declare")
    if not case.valid and not 400 <= status < 500:
        found.append("accepted what the document calls invalid")
    if case.valid and status in (400, 422):
        code = response.json().get("error", {}).get("code")
        if code in MALFORMED:
            found.append(f"refused as malformed ({code}) what the document accepts")
    return found


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessService]:
    with in_process_service(app_config(tmp_path_factory.mktemp("live-spec"))) as service:
        yield service


def test_the_service_answers_as_its_document_says(service: InProcessService) -> None:
    job_id = service.completed_job()
    batch = service.http.post("/api/batch-generate", json={"job_ids": [job_id]})
    assert batch.status_code == 202, batch.text
    known = {"job_id": job_id, "batch_id": batch.json()["batch_id"]}
    vertices, faces = cube()
    files = {
        "a PNG photo": ("photo.png", encode(photo("chelsea")[:120, :160]), "image/png"),
        "an STL cube": ("cube.stl", binary_stl(vertices, faces), "model/stl"),
        "an empty file": ("empty.png", b"", "image/png"),
        "a text file": ("notes.txt", b"not a picture, not a mesh\n", "text/plain"),
    }
    with on_loopback(service) as url:
        spec: dict[str, Any] = httpx.get(f"{url}/openapi.json").json()
        document = Document(spec, known, files)
        cases = document.cases()
        per_operation: dict[tuple[str, str], int] = {}
        failures: list[str] = []
        started = time.monotonic()
        sent = 0
        with httpx.Client(base_url=url, timeout=30.0) as http:
            for case in cases:
                key = (case.method, case.path)
                if per_operation.get(key, 0) >= MAX_CASES_PER_OPERATION:
                    continue
                per_operation[key] = per_operation.get(key, 0) + 1
                assert time.monotonic() - started < BUDGET_S, f"over {BUDGET_S} s"
                response = send(http, case)
                sent += 1
                declared = set(spec["paths"][case.path][case.method]["responses"])
                for problem in problems(case, response, declared):
                    failures.append(
                        f"{case.method.upper()} {case.path} [{case.why}]: {problem}: "
                        f"{response.status_code} {response.text[:160]}"
                    )
    operations = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert set(per_operation) == operations  # every operation was tried
    assert sent > 300
    assert not failures, f"{len(failures)} of {sent} answers:\n" + "\n".join(failures)
