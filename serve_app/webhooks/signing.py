"""Webhook signatures: HMAC-SHA256 over ``timestamp + "." + body``, hex, in a header.

A receiver recomputes the HMAC with its secret over the ``Orfeas-Timestamp`` header, a
dot and the raw body, compares it with ``Orfeas-Signature`` (``v1=<hex>``) in constant
time, and refuses a timestamp too far from its clock (a replayed delivery).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Orfeas-Signature"
TIMESTAMP_HEADER = "Orfeas-Timestamp"
DELIVERY_HEADER = "Orfeas-Delivery"
EVENT_HEADER = "Orfeas-Event"
#: The version prefix of a signature (a new scheme would get a new one).
SCHEME = "v1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=`` and the hex HMAC-SHA256 of ``f"{timestamp}." + body`` under ``secret``."""
    message = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def verify(
    secret: str, timestamp: str, body: bytes, header: str, now: float, tolerance_s: float = 300
) -> bool:
    """True when ``header`` signs ``body`` at ``timestamp`` under ``secret`` and the
    timestamp is within ``tolerance_s`` of ``now``."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, sent, body), header)


def headers(
    secret: str, timestamp: int, body: bytes, delivery_id: str, event: str
) -> dict[str, str]:
    """The headers of one attempt of a delivery."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "orfeas-webhooks/1",
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        TIMESTAMP_HEADER: str(timestamp),
        DELIVERY_HEADER: delivery_id,
        EVENT_HEADER: event,
    }
