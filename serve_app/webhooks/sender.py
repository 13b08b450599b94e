"""One attempt of a delivery: the target checked again, then one signed POST with httpx.

The request goes to the address that was checked (the URL's host is kept in the ``Host``
header and as the TLS server name), redirects are not followed (a 3xx is a failed try),
no proxy from the environment is used, and at most ``max_response_bytes`` of the answer
are read.
"""

from __future__ import annotations

import ipaddress
import time

import httpx

from serve_app.webhooks import signing
from serve_app.webhooks.addresses import (
    CallbackRefusedError,
    IPNetwork,
    Target,
    checked_address,
    parse_target,
)
from serve_app.webhooks.config import WebhookConfig
from serve_app.webhooks.records import Attempt, Delivery


class Refused(Exception):
    """The target may not be sent to (policy, or no signing secret): not worth retrying."""


def client() -> httpx.AsyncClient:
    """The sender's HTTP client: no redirects, no proxies from the environment."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False)


def pinned(target: Target, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> httpx.URL:
    """``target``'s URL with its host replaced by the checked ``address``."""
    host = str(address)
    return httpx.URL(target.url).copy_with(host=host, port=target.port)


def host_header(target: Target) -> str:
    """The ``Host`` header of ``target``: its host (an IPv6 one in brackets), and its port
    unless it is the scheme's default."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    default_port = 443 if target.scheme == "https" else 80
    return host if target.port == default_port else f"{host}:{target.port}"


async def attempt(
    http: httpx.AsyncClient,
    delivery: Delivery,
    config: WebhookConfig,
    own: tuple[IPNetwork, ...],
) -> Attempt:
    """POST ``delivery`` once; raise ``Refused`` when it may not be sent at all."""
    secret = config.secret_of(delivery.key_id)
    if not secret:
        raise Refused("no signing secret is configured for this key")
    started = time.monotonic()
    try:
        target = parse_target(delivery.url, config)
        address = await checked_address(target, config, own)
    except CallbackRefusedError as exc:
        raise Refused(exc.message) from None
    now = time.time()
    headers = signing.headers(secret, int(now), delivery.body, delivery.delivery_id, delivery.event)
    headers["Host"] = host_header(target)
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        async with http.stream(
            "POST",
            pinned(target, address),
            content=delivery.body,
            headers=headers,
            extensions=extensions,
            timeout=config.timeout_s,
        ) as response:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= config.max_response_bytes:
                    break
            return Attempt(now, response.status_code, None, round(time.monotonic() - started, 4))
    except httpx.TimeoutException:
        error = f"no answer within {config.timeout_s} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    return Attempt(now, None, error, round(time.monotonic() - started, 4))
