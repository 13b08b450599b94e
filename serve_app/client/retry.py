"""When the client asks again: 429 and 503 answers, after their ``Retry-After``, within a bound.

A request that only reads (``GET``), or whose repetition changes nothing (cancel, analyze,
preview, the content-addressed optimize and apply-material), is asked again after any
429 or 503 but those that say the feature is missing (``model_not_configured``,
``assets_missing``: waiting does not help).

A request that creates something (upload, generate, text-to-image, batch) is asked again
only when the answer proves nothing was created. Two codes prove it:

- ``rate_limited`` (429): the API's guard refuses a request over its rate limit before any
  route runs, and the job registry refuses a run over the client's share of the queue
  before it claims the run (admission and claim are one step in the registry's actor);
- ``overloaded`` (503): the registry's queue is full, refused (like the share) before the
  claim.

Any other 429 or 503 of such a request (a proxy's 503 without the service's body, one of
the worker errors) may follow work already done, and is raised instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from serve_app.client.errors import ApiError

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503})
#: Refusals made before the request changed anything (see the module's docstring).
REFUSED_BEFORE_ADMISSION = frozenset({"rate_limited", "overloaded"})
#: 503s that no wait cures.
PERMANENT_CODES = frozenset({"model_not_configured", "assets_missing"})


@dataclass(frozen=True)
class RetryPolicy:
    """How long one request may be retried: at most ``max_attempts`` tries in all (the
    first included) and ``max_wait_s`` seconds of waiting between them; a ``Retry-After``
    that would go past ``max_wait_s`` is not waited for. An answer without
    ``Retry-After`` waits ``backoff_s``, doubling with each retry.
    """

    max_attempts: int = 5
    max_wait_s: float = 60.0
    backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_wait_s < 0 or self.backoff_s < 0:
            raise ValueError("max_wait_s and backoff_s must not be negative")

    def delay(
        self, error: ApiError, idempotent: bool, attempt: int, waited_s: float
    ) -> float | None:
        """Seconds to wait before try ``attempt + 1`` after ``error``, or None: raise it.

        ``attempt`` counts the tries made so far; ``waited_s`` the seconds already waited.
        """
        if not may_retry(error, idempotent) or attempt >= self.max_attempts:
            return None
        wait = error.retry_after
        if wait is None:
            wait = self.backoff_s * 2 ** (attempt - 1)
        if waited_s + wait > self.max_wait_s:
            return None
        return wait


NO_RETRIES = RetryPolicy(max_attempts=1, max_wait_s=0.0)


def may_retry(error: ApiError, idempotent: bool) -> bool:
    """Whether asking again after ``error`` is safe and may help."""
    if error.status not in RETRY_STATUSES or error.code in PERMANENT_CODES:
        return False
    return idempotent or error.code in REFUSED_BEFORE_ADMISSION


class Attempts:
    """The tries of one request under a policy: ask :meth:`delay` after each error."""

    def __init__(self, policy: RetryPolicy, idempotent: bool) -> None:
        self.policy = policy
        self.idempotent = idempotent
        self.made = 1
        self.waited_s = 0.0

    def delay(self, error: ApiError) -> float | None:
        """Seconds to wait before the next try, or None: give up and raise ``error``."""
        wait = self.policy.delay(error, self.idempotent, self.made, self.waited_s)
        if wait is not None:
            self.made += 1
            self.waited_s += wait
            logger.info(
                "%s %s answered %d %s; try %d of %d in %.1f s",
                error.method,
                error.url,
                error.status,
                error.code,
                self.made,
                self.policy.max_attempts,
                wait,
            )
        return wait

    def next_wait(self, error: ApiError) -> float:
        """:meth:`delay`, raising ``error`` where it gives up."""
        wait = self.delay(error)
        if wait is None:
            raise error
        return wait
