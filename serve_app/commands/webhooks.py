"""``deliveries``: the webhook deliveries of a job's (or, with ``--batch``, a batch's)
``callback_url``, each with its attempts.

For people, a line per delivery (its event, URL and state) and under it a line per attempt
(when, the receiver's status or why there was none, how long it took). With ``--json``,
one line per delivery: ``{"type": "delivery", "target_id", "delivery_id", "event", "url",
"run", "state", "attempts": [{"at", "status_code", "error", "seconds"}], "next_try_at",
"give_up_at", "created_at"}`` (a delivery of ``GET /api/jobs/{id}/deliveries``).
"""

from __future__ import annotations

import argparse
from typing import Any

from serve_app.client import OrfeasClient
from serve_app.client.calls import job_path_id
from serve_app.commands.common import (
    EXIT_OK,
    Output,
    UsageError,
    add_connection_options,
    client_options,
)
from serve_app.schemas.webhooks import AttemptResponse, DeliveryResponse


def add_deliveries_command(commands: Any) -> None:
    parser = commands.add_parser(
        "deliveries", help="a job's webhook deliveries (its callback_url) and their attempts"
    )
    parser.add_argument("target_id", metavar="ID", help="a job id (with --batch, a batch id)")
    parser.add_argument(
        "--batch", action="store_true", help="ID is a batch's: list the batch's deliveries"
    )
    add_connection_options(parser)


def deliveries(args: argparse.Namespace, output: Output) -> int:
    what = "batch" if args.batch else "job"
    try:
        target_id = job_path_id(args.target_id, what)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with OrfeasClient(**client_options(args)) as client:
        found = client.batch_deliveries(target_id) if args.batch else client.deliveries(target_id)
    for delivery in found.deliveries:
        output.emit({"type": "delivery", "target_id": found.target_id,
                     **delivery.model_dump(mode="json")})  # fmt: skip
        output.result(delivery_text(delivery))
        for attempt in delivery.attempts:
            output.result("  " + attempt_text(attempt))
    if not found.deliveries:
        output.result(f"{what} {target_id}: no webhook deliveries")
    return EXIT_OK


def delivery_text(delivery: DeliveryResponse) -> str:
    """``delivery 9c1e… job.completed (run 1) to https://…: pending, next try at …``."""
    run = f" (run {delivery.run})" if delivery.run else ""
    line = f"delivery {delivery.delivery_id} {delivery.event}{run} to {delivery.url}: "
    line += delivery.state
    if delivery.next_try_at is not None:
        line += f", next try at {delivery.next_try_at.isoformat(timespec='seconds')}"
    return line


def attempt_text(attempt: AttemptResponse) -> str:
    """``2025-06-01T12:00:00+00:00 500 (0.02 s)``, or ``… no answer: timeout (10.00 s)``."""
    answer = str(attempt.status_code) if attempt.status_code is not None else "no answer"
    if attempt.error:
        answer += f": {attempt.error}"
    return f"{attempt.at.isoformat(timespec='seconds')} {answer} ({attempt.seconds:.2f} s)"
