"""Token buckets by key: the rate-limit state every ingress replica shares (in one actor)."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from serve_app.config_policies import RateLimit


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """One token bucket per key, at most ``max_keys`` (the least recently used go first).

    ``take`` is all-or-nothing over several keys (a client's API key and its address):
    either every bucket gives a token, or none does and the answer is how long to wait.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, wants: list[tuple[str, RateLimit]], now: float | None = None) -> float:
        """Take one token from each key's bucket; 0.0 if taken, else seconds until possible."""
        now = time.monotonic() if now is None else now
        buckets = [(self._refill(key, limit, now), limit) for key, limit in wants]
        wait = max(
            ((1.0 - bucket.tokens) / limit.rate_per_s for bucket, limit in buckets), default=0.0
        )
        if wait > 0:
            return wait
        for bucket, _ in buckets:
            bucket.tokens -= 1.0
        return 0.0

    def _refill(self, key: str, limit: RateLimit, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(limit.burst), stamp=now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.stamp)
            bucket.tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.rate_per_s)
            bucket.stamp = now
        return bucket
