"""RateLimiter: the named actor that holds the token buckets every ingress replica shares.

Rate limits must hold across replicas (a client spread over two replicas gets one budget),
so the buckets live in one small async actor beside the registry, not in each replica. A
restart of the actor forgets the buckets (every client starts with a full burst again),
which errs on the side of serving. The ingress fails open if the actor does not answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import ray
from ray.actor import ActorHandle

from serve_app.config import AppConfig
from serve_app.config_policies import RateLimit
from serve_app.ratelimit import TokenBuckets
from serve_app.registry.client import find_actor

logger = logging.getLogger(__name__)

#: Longest the ingress waits for the limiter before it lets the request through. A burst
#: queues at the actor, and its answers are waited for: only a limiter that says nothing
#: for this long counts as lost (letting a burst through on a short timeout would defeat
#: the limit exactly when it matters).
LIMITER_TIMEOUT_S = 5.0


class RateLimiter:
    """Token buckets by key (``key:<id>``, ``ip:<address>``), all-or-nothing per request."""

    def __init__(self) -> None:
        self._buckets = TokenBuckets()

    async def take(self, wants: list[tuple[str, RateLimit]]) -> float:
        """0.0 if the request may go, else the seconds the client should wait."""
        return self._buckets.take(wants)


def create_limiter(config: AppConfig) -> ActorHandle:
    """The shared limiter actor named in ``config``, created with its options unless it
    exists (in the registry's namespace).
    """
    options = config.rate_limiter.actor.ray_options(
        config.rate_limiter_name, config.registry.namespace
    )
    return cast(ActorHandle, ray.remote(RateLimiter).options(**options).remote())


def find_limiter(config: AppConfig) -> ActorHandle:
    """The limiter actor ``build_app`` created."""
    return find_actor(config.rate_limiter_name, config.registry.namespace)


class LimiterClient:
    """The ingress's view of the limiter: ``await take(wants)`` → seconds to wait (0: go)."""

    def __init__(self, actor: ActorHandle) -> None:
        self._actor = actor

    async def take(self, wants: list[tuple[str, RateLimit]]) -> float:
        try:
            return float(await asyncio.wait_for(self._actor.take.remote(wants), LIMITER_TIMEOUT_S))
        except Exception as exc:  # fail open: a lost limiter must not take the API down
            logger.warning("rate limiter unavailable, request let through: %s", exc)
            return 0.0
