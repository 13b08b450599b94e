"""The child process that runs pymeshlab's work: answers, errors, time limits and crashes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from serve_app.errors import (
    OrfeasError,
    ValidationFailedError,
    WorkerLostError,
    WorkTimeoutError,
)
from serve_app.meshtools.isolated import IsolatedWorker


def child_pid() -> int:
    return os.getpid()


def refuse(message: str) -> None:
    raise ValidationFailedError(message, field="target_faces")


def break_down() -> None:
    raise KeyError("a bug")


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "awake"


def die() -> None:
    os.abort()


@pytest.fixture
def worker() -> Iterator[IsolatedWorker]:
    worker = IsolatedWorker("test")
    try:
        yield worker
    finally:
        worker.close()


def test_calls_run_in_one_kept_child_process(worker: IsolatedWorker) -> None:
    first = worker.call(child_pid, timeout_s=60)
    assert first != os.getpid()
    assert worker.call(child_pid, timeout_s=60) == first
    assert worker.starts == 1


def test_errors_come_back_as_the_services_own(worker: IsolatedWorker) -> None:
    with pytest.raises(ValidationFailedError) as refused:
        worker.call(refuse, "ask for more faces", timeout_s=60)
    assert refused.value.status_code == 422 and refused.value.details == {"field": "target_faces"}
    with pytest.raises(OrfeasError) as bug:
        worker.call(break_down, timeout_s=60)
    assert bug.value.status_code == 500 and "a bug" not in bug.value.message
    assert worker.call(sleep, 0, timeout_s=60) == "awake"  # the child lives on
    assert worker.starts == 1


def test_a_call_over_its_time_is_stopped_and_the_next_gets_a_new_child(
    worker: IsolatedWorker,
) -> None:
    pid = worker.call(child_pid, timeout_s=60)
    with pytest.raises(WorkTimeoutError) as late:
        worker.call(sleep, 30, timeout_s=0.5)
    assert late.value.status_code == 503
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed, and reaped
    assert worker.call(sleep, 0, timeout_s=60) == "awake"
    assert worker.starts == 2


def test_a_child_that_dies_is_a_retryable_503_and_is_replaced(worker: IsolatedWorker) -> None:
    with pytest.raises(WorkerLostError) as lost:
        worker.call(die, timeout_s=60)
    assert lost.value.status_code == 503 and lost.value.details["retryable"] is True
    assert worker.call(sleep, 0, timeout_s=60) == "awake"
    assert worker.starts == 2
