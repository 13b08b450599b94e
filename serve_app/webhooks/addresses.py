"""Where a webhook may go: https (or http to named hosts), to a public address only.

A target's host is resolved and every address it resolves to is checked: loopback,
link-local, private, shared, multicast, reserved and unspecified addresses are refused,
and so are the cluster's own (its nodes' addresses and ``blocked_networks``), unless the
host is one of ``internal_hosts`` (a receiver on this machine in tests). The sender
connects to the address that was checked, so a name that resolves elsewhere a moment
later (DNS rebinding) cannot turn the request inward.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from serve_app.errors import OrfeasError
from serve_app.webhooks.config import WebhookConfig

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class CallbackRefusedError(OrfeasError):
    """A ``callback_url`` the service will not send to (the reason is in the message)."""

    status_code = 422
    code = "callback_url_refused"


@dataclass(frozen=True)
class Target:
    """A checked ``callback_url``: its scheme, host (lowercase, no brackets) and port."""

    url: str
    scheme: str
    host: str
    port: int


def parse_target(url: str, config: WebhookConfig) -> Target:
    """``url`` as a target, or a 422 saying why it may not be one (before any lookup)."""
    if len(url) > config.max_url_chars:
        raise CallbackRefusedError(f"callback_url is longer than {config.max_url_chars} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefusedError(f"callback_url is not a URL: {exc}") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("https", "http") or not host:
        raise CallbackRefusedError("callback_url must be an https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefusedError("callback_url may not carry a user name or password")
    if scheme == "http" and host not in config.http_hosts:
        raise CallbackRefusedError(f"callback_url must use https (http is not allowed for {host})")
    return Target(
        url=url, scheme=scheme, host=host, port=port or (443 if scheme == "https" else 80)
    )


def refusal(address: IPAddress, own: tuple[IPNetwork, ...]) -> str | None:
    """Why ``address`` may not be sent to (its kind: loopback, private, cluster...), or
    None when it is a public address outside the cluster."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    kinds = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("non-public", not address.is_global),
    )
    found = next((kind for kind, hit in kinds if hit), None)
    if found is None and any(address in network for network in own):
        return "cluster"  # one of the cluster's own
    return found


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal address is itself); a resolver
    failure is a refusal."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise CallbackRefusedError(f"callback_url's host {host} does not resolve: {exc}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def checked_address(
    target: Target, config: WebhookConfig, own: tuple[IPNetwork, ...]
) -> IPAddress:
    """The address to connect to for ``target``: every address its host resolves to must
    be allowed (any refused one refuses the target), unless the host is internal."""
    addresses = await resolve(target.host, target.port)
    if not addresses:
        raise CallbackRefusedError(f"callback_url's host {target.host} has no address")
    if target.host not in config.internal_hosts:
        for address in addresses:
            if (why := refusal(address, own)) is not None:
                raise CallbackRefusedError(
                    f"callback_url's host {target.host} resolves to {address}, a {why} address"
                )
    return addresses[0]


def own_networks(config: WebhookConfig, nodes: bool = False) -> tuple[IPNetwork, ...]:
    """The cluster's own addresses: ``blocked_networks``, this host's addresses and, with
    ``nodes`` under Ray, every node's (a call to Ray's control store: once, not per request)."""
    networks = [ipaddress.ip_network(n, strict=False) for n in config.blocked_networks]
    hosts: set[str] = set()
    with contextlib.suppress(OSError):
        hosts.update(socket.gethostbyname_ex(socket.gethostname())[2])
    if nodes:
        try:
            import ray

            if ray.is_initialized():
                hosts.update(str(n["NodeManagerAddress"]) for n in ray.nodes() if n.get("Alive"))
        except Exception:  # noqa: BLE001 - a cluster that cannot be asked adds nothing
            pass
    for host in sorted(hosts):
        try:
            networks.append(ipaddress.ip_network(host))
        except ValueError:
            continue
    return tuple(networks)
