"""What the service may send webhooks to, how they are signed, and how long they are retried."""

from __future__ import annotations

import ipaddress
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

#: The service secret of a config that names none: webhooks are then refused (422).
NO_SECRET = SecretStr("")


class WebhookConfig(BaseModel):
    """``webhooks`` of the application's config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: SecretStr = Field(
        default=NO_SECRET,
        description="the service's signing secret, used when the service has no API keys; "
        "empty: callback_url is refused",
    )
    key_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="signing secret of each API key, by key id (the 12 hex after "
        '"sha256:" in its hash); a key without one may not ask for webhooks',
    )
    http_hosts: tuple[str, ...] = Field(
        default=(),
        description="hosts that may be sent to over plain http (every other target must be https)",
    )
    internal_hosts: tuple[str, ...] = Field(
        default=(),
        description="hosts whose loopback, private or link-local addresses are allowed "
        "(a receiver on this machine in tests, a local setup); no one else's are",
    )
    blocked_networks: tuple[str, ...] = Field(
        default=(),
        description="the cluster's own networks beyond its nodes' addresses (\"10.42.0.0/16\": "
        "pods, services); never sent to unless the host is in internal_hosts",
    )
    max_url_chars: int = Field(default=2048, ge=16, le=8192)
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="the JSON posted; a longer status is trimmed"
    )
    max_response_bytes: int = Field(
        default=4096, ge=0, description="read of a receiver's answer (the rest is dropped)"
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="one attempt's limit")
    retry_for_s: float = Field(
        default=24 * 3600.0, gt=0, description="how long a delivery is retried before it fails"
    )
    first_backoff_s: float = Field(default=2.0, gt=0, description="wait after the first failure")
    max_backoff_s: float = Field(default=600.0, gt=0, description="longest wait between tries")
    concurrency: int = Field(default=16, ge=1, le=256, description="deliveries sent at once")

    @field_validator("blocked_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names it
        return value

    @field_validator("http_hosts", "internal_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(h.strip().lower().strip("[]") for h in value)

    @model_validator(mode="after")
    def _backoff(self) -> Self:
        if self.first_backoff_s > self.max_backoff_s:
            raise ValueError("webhooks.first_backoff_s must not exceed max_backoff_s")
        return self

    def secret_of(self, key_id: str | None) -> str:
        """The signing secret of ``key_id``'s webhooks (the service's one without keys);
        empty when none is configured. A key never falls back to the service's secret, so
        no key's receiver can sign as another's."""
        if key_id is not None:
            found = self.key_secrets.get(key_id)
            return found.get_secret_value() if found is not None else ""
        return self.secret.get_secret_value()

    def backoff_s(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed try (1, 2, ...): doubling, capped."""
        return min(self.max_backoff_s, self.first_backoff_s * 2 ** max(0, attempts - 1))
