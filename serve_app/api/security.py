"""The API's outer guard: body size limits, API keys, per-key and per-IP rate limits, CORS.

One ASGI middleware, in front of every route, so no route can forget it:

- **Body size**: a ``Content-Length`` over the limit is a 413 before a byte is read; a body
  without one is counted while it streams in and cut off with a 413 at the limit. Image
  uploads get ``pipeline.limits.max_upload_bytes``, mesh files for analysis
  ``mesh_tools.max_upload_bytes``, a batch of photos 16 times the image limit (each plus
  multipart framing), every other request ``security.max_body_bytes``.
- **Body pace**: a body that sends nothing for ``security.body_idle_timeout_s`` is a 408;
  one client (key or address) may have ``security.max_concurrent_uploads`` file uploads in
  flight on a replica, more are a 429 with ``Retry-After`` (``serve_app.api.body_guard``).
- **API keys** (when ``security.api_key_hashes`` or ``admin_key_hashes`` is set):
  ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Browsers cannot give a WebSocket
  headers, so a WebSocket may offer the key as a subprotocol, ``orfeas.key.<base64url of
  the key>`` beside ``orfeas.v1`` (which the server answers with); the ``?api_key=`` query
  of old clients is still taken but discouraged (proxy logs record URLs). Keys are compared
  by their SHA-256; the config never holds a key. A key sees only the jobs it uploaded;
  an admin key sees all.
- **Rate limits**: token buckets per key and per client address, shared by every ingress
  replica through the RateLimiter actor; over the limit is a 429 with ``Retry-After``.
- **CORS**: Starlette's CORSMiddleware with the configured origins only.

Refusals are the service's own errors (401, 413, 429), rendered like every other error.
Liveness, readiness, the docs and the studio page stay public. The client's identity
(``key:<id>`` or ``ip:<address>``) is left in ``request.state.client_id`` for fair shares,
and whose jobs it may see in ``request.state.viewer``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol
from urllib.parse import parse_qs

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from serve_app.api.body_guard import UploadSlots, idle_timeout
from serve_app.api.errors import CarriedError, render_error
from serve_app.config_policies import RateLimit, SecurityConfig
from serve_app.errors import OrfeasError, PayloadTooLargeError, RateLimitedError, UnauthorizedError
from serve_app.registry.jobs import EVERYONE, Viewer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths under these prefixes need a key (when keys are configured) and count for limits.
PROTECTED_PREFIXES = ("/api/", "/download/", "/ws/", "/metrics")
#: Public even so: probes and the API docs.
PUBLIC_PATHS = frozenset({"/api/health", "/api/docs"})
UPLOAD_PATH = "/api/upload-image"
#: Room for multipart boundaries and part headers around an upload's bytes.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
#: WebSocket close code for a refused connection (policy violation).
WS_POLICY_VIOLATION = 1008
#: The WebSocket subprotocol the service speaks (and answers with when it is offered).
WS_SUBPROTOCOL = "orfeas.v1"
#: A WebSocket subprotocol that carries an API key: this prefix, then the key in base64url.
WS_KEY_PROTOCOL_PREFIX = "orfeas.key."


class Limiter(Protocol):
    async def take(self, wants: list[tuple[str, RateLimit]]) -> float: ...


def hash_key(key: str) -> str:
    """The config form of an API key: ``sha256:<64 hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """The accepted keys, by hash; a key's id is the first 12 hex digits of its hash."""

    def __init__(self, hashes: tuple[str, ...], admin_hashes: tuple[str, ...] = ()) -> None:
        self._hashes = tuple(hashes)
        self._admin_hashes = tuple(admin_hashes)

    def identify(self, key: str | None) -> Viewer | None:
        """Who ``key`` is (its id, and whether it sees every job), or None if not accepted."""
        if not key:
            return None
        digest = hash_key(key)
        for hashes, admin in ((self._admin_hashes, True), (self._hashes, False)):
            for accepted in hashes:
                if hmac.compare_digest(accepted, digest):
                    return Viewer(key_id=accepted[7:19], sees_all=admin)
        return None


def route_path(scope: Scope) -> str:
    """The path below the application's route prefix (Serve's ``root_path``)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def is_protected(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES) and path not in PUBLIC_PATHS


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def presented_key(scope: Scope, headers: dict[str, str]) -> str | None:
    """The key the client sent: bearer token, X-API-Key, or (WebSocket only) a key
    subprotocol, or else the discouraged ``api_key`` query parameter."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    if headers.get("x-api-key"):
        return headers["x-api-key"].strip() or None
    if scope["type"] == "websocket":
        for protocol in scope.get("subprotocols", ()):
            if protocol.startswith(WS_KEY_PROTOCOL_PREFIX):
                return _decode_key_protocol(protocol[len(WS_KEY_PROTOCOL_PREFIX) :])
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        values = query.get("api_key")
        return values[0] if values else None
    return None


def key_protocol(key: str) -> str:
    """The WebSocket subprotocol that carries ``key`` (what the studio offers)."""
    encoded = base64.urlsafe_b64encode(key.encode()).decode("ascii").rstrip("=")
    return WS_KEY_PROTOCOL_PREFIX + encoded


def _decode_key_protocol(encoded: str) -> str | None:
    try:
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return key or None


def accepted_subprotocol(scope: Scope) -> str | None:
    """The subprotocol to answer a WebSocket with: ours when offered (a browser that offers
    subprotocols fails a handshake answered without one), never the one carrying a key."""
    return WS_SUBPROTOCOL if WS_SUBPROTOCOL in scope.get("subprotocols", ()) else None


class TrustedProxies:
    """``security.trusted_proxies``: addresses, networks in CIDR form (``10.0.0.0/8``, so
    every node of a cluster, whose HAProxy forwards to replicas on other nodes), or exact
    host names.
    """

    def __init__(self, entries: tuple[str, ...]) -> None:
        self._exact = frozenset(entries)
        self._networks = tuple(n for n in map(_network, entries) if n is not None)

    def __contains__(self, address: object) -> bool:
        if address in self._exact:
            return True
        if not self._networks or not isinstance(address, str):
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """``entry`` as an address network (a bare address is a network of one), else None."""
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def client_address(scope: Scope, headers: dict[str, str], trusted: TrustedProxies) -> str:
    """The peer's address, or the one a trusted proxy forwarded (rightmost untrusted)."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if peer in trusted and headers.get("x-forwarded-for"):
        hops = [h.strip() for h in headers["x-forwarded-for"].split(",") if h.strip()]
        for hop in reversed(hops):
            if hop not in trusted:
                return hop[:64]
    return peer


class SecurityMiddleware:
    """Body limits, API keys and rate limits for every HTTP request and WebSocket."""

    def __init__(
        self,
        app: ASGIApp,
        config: SecurityConfig,
        upload_limit_bytes: int,
        limiter: Limiter | None = None,
        path_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.keys = KeyRing(config.api_key_hashes, config.admin_key_hashes)
        self.trusted = TrustedProxies(config.trusted_proxies)
        #: Paths whose bodies carry a file, each with its own limit (plus framing).
        self.file_limits = {
            path: limit + MULTIPART_OVERHEAD_BYTES
            for path, limit in {UPLOAD_PATH: upload_limit_bytes, **(path_limits or {})}.items()
        }
        self.limiter = limiter
        self.uploads = UploadSlots(config.max_concurrent_uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        uploader = None
        try:
            receive = await self._admit(scope, receive)
            if scope["type"] == "http" and route_path(scope) in self.file_limits:
                uploader = scope["state"]["client_id"]
                self.uploads.take(uploader)
        except OrfeasError as error:
            await _refuse(scope, receive, send, error)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            if uploader is not None:
                self.uploads.release(uploader)

    async def _admit(self, scope: Scope, receive: Receive) -> Receive:
        """Check the request; note who it is from; the ``receive`` that counts its body."""
        path = route_path(scope)
        headers = _headers(scope)
        address = client_address(scope, headers, self.trusted)
        key = self.keys.identify(presented_key(scope, headers))
        state = scope.setdefault("state", {})
        state["client_address"] = address
        state["api_key_id"] = key.key_id if key else None
        state["client_id"] = f"key:{key.key_id}" if key else f"ip:{address}"
        # Without keys every caller sees every job; with keys, its own (or all: an admin).
        state["viewer"] = key if self.config.requires_key and key else EVERYONE
        if is_protected(path):
            if self.config.requires_key and key is None:
                raise UnauthorizedError(
                    "an API key is required: send Authorization: Bearer <key> or X-API-Key"
                )
            await self._take_token(key.key_id if key else None, address)
        if scope["type"] != "http":
            return receive
        limit = self.file_limits.get(path, self.config.max_body_bytes)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        return idle_timeout(_counting(receive, limit), self.config.body_idle_timeout_s)

    async def _take_token(self, key_id: str | None, address: str) -> None:
        wants: list[tuple[str, RateLimit]] = []
        if key_id is not None and self.config.per_key_rate is not None:
            wants.append((f"key:{key_id}", self.config.per_key_rate))
        if self.config.per_ip_rate is not None:
            wants.append((f"ip:{address}", self.config.per_ip_rate))
        if not wants or self.limiter is None:
            return
        wait = await self.limiter.take(wants)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise RateLimitedError(f"too many requests; retry in {retry} s", retry_after_s=retry)


async def _refuse(scope: Scope, receive: Receive, send: Send, error: OrfeasError) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": error.code})
        return
    await render_error(error)(scope, receive, send)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the request body is larger than {limit} bytes", limit_bytes=limit)


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises a 413 once more than ``limit`` body bytes have come in."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise CarriedError(_too_large(limit))
        return message

    return counted


def install_security(
    app: FastAPI,
    config: SecurityConfig,
    upload_limit_bytes: int,
    limiter: Limiter | None,
    path_limits: Mapping[str, int] | None = None,
) -> None:
    """Add the guard, then CORS around it (so preflights and refusals carry CORS headers).
    ``path_limits``: body limits of other paths that take a file, beside the image upload's.
    """
    app.add_middleware(
        SecurityMiddleware,
        config=config,
        upload_limit_bytes=upload_limit_bytes,
        limiter=limiter,
        path_limits=path_limits,
    )
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
