"""Config of the service's policies: access control, request limits and artifact retention."""

from __future__ import annotations

import re
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_KEY_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(_Strict):
    """A token bucket: ``burst`` requests at once, refilled at ``rate_per_s``."""

    rate_per_s: float = Field(gt=0, le=1_000_000)
    burst: int = Field(ge=1, le=1_000_000)


class SecurityConfig(_Strict):
    """Who may call the API, how often, from which browser origins, with how big a body."""

    api_key_hashes: tuple[str, ...] = Field(
        default=(),
        description='"sha256:<64 hex>" of each accepted key (`python -m serve_app hash-key`); '
        "empty: no key is required",
    )
    admin_key_hashes: tuple[str, ...] = Field(
        default=(),
        description="keys (hashed the same way) that may also see and act on every "
        "key's jobs; accepted like the keys above",
    )
    cors_origins: tuple[str, ...] = Field(
        default=(), description='browser origins allowed to call the API, e.g. "https://a.b"'
    )
    per_key_rate: RateLimit | None = Field(default=None, description="per API key")
    per_ip_rate: RateLimit | None = Field(default=None, description="per client IP address")
    max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="any request body but an image upload's"
    )
    trusted_proxies: tuple[str, ...] = Field(
        default=(),
        description="peers whose X-Forwarded-For is believed (HAProxy, a load balancer): "
        'addresses or CIDR networks ("10.0.0.0/8")',
    )
    body_idle_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="a request whose body sends nothing for this long is answered 408",
    )
    max_concurrent_uploads: int = Field(
        default=16,
        gt=0,
        description="file uploads (images, meshes, batches) one client (key or address) may "
        "send at once to one ingress replica; more are answered 429 with Retry-After",
    )

    @field_validator("api_key_hashes", "admin_key_hashes")
    @classmethod
    def _hashes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not _KEY_HASH_RE.fullmatch(entry):
                raise ValueError('each API key hash must read "sha256:" and 64 lowercase hex')
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not _ORIGIN_RE.fullmatch(origin):
                raise ValueError(f"not a browser origin (scheme://host[:port]): {origin!r}")
        return value

    @model_validator(mode="after")
    def _no_wildcard_with_keys(self) -> Self:
        if "*" in self.cors_origins and self.requires_key:
            raise ValueError('cors_origins "*" is refused when API keys are required')
        return self

    @property
    def requires_key(self) -> bool:
        """Keys are configured: every protected call needs one, and jobs have owners."""
        return bool(self.api_key_hashes or self.admin_key_hashes)

    @property
    def rate_limited(self) -> bool:
        return self.per_key_rate is not None or self.per_ip_rate is not None


class RetentionConfig(_Strict):
    """How long finished jobs and their files are kept, and the disk budget of artifacts."""

    ttl_s: float | None = Field(
        default=7 * 24 * 3600.0, gt=0, description="ended or idle jobs older than this go"
    )
    max_bytes: int | None = Field(
        default=None, gt=0, description="artifact bytes kept; the oldest ended jobs go first"
    )
    interval_s: float = Field(default=300.0, gt=0, description="how often the collector runs")
    grace_s: float = Field(
        default=600.0,
        ge=0,
        description="files younger than this are never removed (uploads and meshes in flight)",
    )
