"""What the service commands share: connection options, exit codes, output, error messages.

Output: people get progress on stderr and results on stdout; with ``--json`` stdout carries
only JSON, one object per line (see each command), and errors are JSON lines too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from rich.console import Console

from serve_app.client import ApiError, ClientError, RetryPolicy, Unauthorized
from serve_app.client.base import ClientSettings

EXIT_OK = 0
#: A job failed or was cancelled, or the service refused a request.
EXIT_FAILED = 1
#: The command line itself is wrong (argparse uses 2 as well).
EXIT_USAGE = 2

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_KEY_ENV = "ORFEAS_API_KEY"


class UsageError(Exception):
    """A mistake in the command line found after parsing (exit 2)."""


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("service")
    group.add_argument(
        "--url",
        default=os.environ.get("ORFEAS_URL", DEFAULT_URL),
        help=f"the service's base URL (default: $ORFEAS_URL, else {DEFAULT_URL})",
    )
    group.add_argument(
        "--api-key-env",
        metavar="VAR",
        help=f"environment variable holding the API key (default: {DEFAULT_KEY_ENV}, if set)",
    )
    group.add_argument(
        "--max-retry-wait",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds to wait in all for a busy service (429/503) per request (default 120)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        help="print JSON only: one object per line on stdout",
    )


def api_key(args: argparse.Namespace) -> str | None:
    """The key from ``--api-key-env VAR`` (which must be set), else $ORFEAS_API_KEY."""
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise UsageError(f"--api-key-env {args.api_key_env}: that variable is not set")
        return key
    return os.environ.get(DEFAULT_KEY_ENV) or None


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of OrfeasClient/AsyncOrfeasClient from the command line."""
    if args.max_retry_wait < 0:
        raise UsageError("--max-retry-wait must not be negative")
    options: dict[str, Any] = {
        "base_url": args.url,
        "api_key": api_key(args),
        "retry": RetryPolicy(max_attempts=100, max_wait_s=args.max_retry_wait),
    }
    try:
        ClientSettings.make(options["base_url"], None, 1.0, None, None)
    except ValueError as exc:
        raise UsageError(f"--url: {exc}") from None
    return options


class Output:
    """Where a command's words go: JSON lines, or text for people."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode
        #: Progress bars and notes, on stderr.
        self.console = Console(stderr=True, highlight=False)

    def emit(self, record: dict[str, Any]) -> None:
        """One JSON line on stdout (``--json`` only)."""
        if self.json:
            sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
            sys.stdout.flush()

    def result(self, text: str) -> None:
        """A result for people, on stdout."""
        if not self.json:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def note(self, text: str) -> None:
        """A note for people, on stderr (above any progress bars)."""
        if not self.json:
            self.console.print(text, markup=False, soft_wrap=True)

    def error(self, text: str, **fields: Any) -> None:
        if self.json:
            self.emit({"type": "error", "message": text, **fields})
        else:
            self.console.print(f"error: {text}", markup=False, style="red", soft_wrap=True)


def describe_error(error: ClientError, key_given: bool) -> str:
    """A sentence for people about a failed request."""
    if isinstance(error, Unauthorized):
        hint = (
            "the service did not accept the API key; check the key in the variable named by "
            "--api-key-env (or $ORFEAS_API_KEY)"
            if key_given
            else "the service needs an API key: put it in a variable and name it with "
            "--api-key-env VAR (or set $ORFEAS_API_KEY)"
        )
        return f"{hint} ({error.status} {error.code})"
    if isinstance(error, ApiError):
        return f"{error.message} ({error.status} {error.code})"
    return error.message


def error_fields(error: ClientError) -> dict[str, Any]:
    if isinstance(error, ApiError):
        return {"status": error.status, "code": error.code, "retry_after": error.retry_after}
    return {"status": None, "code": "transport_error"}
