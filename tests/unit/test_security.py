"""The API's guard on a bare FastAPI app: body limits, keys, rate limits, CORS, config."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, Request, UploadFile, WebSocket
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from serve_app.api.errors import install_error_handlers
from serve_app.api.security import KeyRing, hash_key, install_security
from serve_app.config import AppConfig
from serve_app.config_policies import RateLimit, SecurityConfig
from serve_app.ratelimit import TokenBuckets
from serve_app.registry.jobs import Viewer
from tests.support import config_from_yaml

KEY = "s3cret-key"


class LocalLimiter:
    """The limiter actor's logic in-process (the same TokenBuckets)."""

    def __init__(self) -> None:
        self.buckets = TokenBuckets()

    async def take(self, wants: list[tuple[str, RateLimit]]) -> float:
        return self.buckets.take(wants)


def make_client(upload_limit: int = 1000, **security: Any) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    install_security(app, SecurityConfig(**security), upload_limit, LocalLimiter())

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        return {"client": request.state.client_id}

    @app.post("/api/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    @app.post("/api/upload-image")
    async def upload(image: UploadFile) -> dict[str, int]:
        return {"size": len(await image.read())}

    @app.websocket("/ws/jobs/x")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_json({"ok": True})
        await socket.close()

    return TestClient(app)


def test_bodies_over_the_limit_are_413_declared_or_streamed() -> None:
    client = make_client(max_body_bytes=100)
    assert client.post("/api/echo", json={"a": "x" * 50}).status_code == 200
    declared = client.post("/api/echo", json={"a": "x" * 200})
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Any:  # no Content-Length: cut off while streaming
        yield b'{"a": "'
        for _ in range(50):
            yield b"x" * 10
        yield b'"}'

    streamed = client.post(
        "/api/echo", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "payload_too_large"


def test_uploads_get_the_image_limit_not_the_json_one() -> None:
    client = make_client(upload_limit=200_000, max_body_bytes=100)
    files = {"image": ("a.png", b"\x89PNG" + b"\0" * 150_000, "image/png")}
    assert client.post("/api/upload-image", files=files).json() == {"size": 150_004}
    files = {"image": ("a.png", b"\0" * 300_000, "image/png")}
    assert client.post("/api/upload-image", files=files).status_code == 413


def test_api_keys_by_bearer_or_header_and_public_probes() -> None:
    client = make_client(api_key_hashes=(hash_key(KEY),))
    assert client.get("/health").status_code == 200
    refused = client.get("/api/whoami")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/api/whoami", headers={"Authorization": "Bearer nope"}).status_code == 401
    key_id = hash_key(KEY)[7:19]
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        assert client.get("/api/whoami", headers=headers).json() == {"client": f"key:{key_id}"}


def test_websockets_need_the_key_too_and_may_pass_it_in_the_query() -> None:
    client = make_client(api_key_hashes=(hash_key(KEY),))
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws/jobs/x"):
        pass
    assert refused.value.code == 1008
    with client.websocket_connect(f"/ws/jobs/x?api_key={KEY}") as socket:
        assert socket.receive_json() == {"ok": True}


def test_rate_limits_answer_429_with_retry_after() -> None:
    client = make_client(per_ip_rate={"rate_per_s": 0.5, "burst": 3})
    codes = [client.get("/api/whoami").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    refused = client.get("/api/whoami")
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert client.get("/health").status_code == 200  # probes are never limited


def test_forwarded_addresses_are_believed_only_from_trusted_proxies() -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.9, 10.0.0.1"}
    untrusted = make_client()
    assert untrusted.get("/api/whoami", headers=forwarded).json() == {"client": "ip:testclient"}
    trusted = make_client(trusted_proxies=("testclient", "10.0.0.1"))
    assert trusted.get("/api/whoami", headers=forwarded).json() == {"client": "ip:203.0.113.9"}


def test_trusted_proxies_may_be_networks() -> None:
    from serve_app.api.security import TrustedProxies

    trusted = TrustedProxies(("127.0.0.1", "10.0.0.0/8", "fd00::/8", "lb.internal"))
    assert "127.0.0.1" in trusted and "10.42.7.1" in trusted and "fd00::1" in trusted
    assert "lb.internal" in trusted
    assert "127.0.0.2" not in trusted and "11.0.0.1" not in trusted
    assert "203.0.113.9" not in trusted and "not-an-address" not in trusted
    # The rightmost hop outside the trusted networks is the client.
    forwarded = {"X-Forwarded-For": "198.51.100.4, 203.0.113.9, 10.1.2.3"}
    client = make_client(trusted_proxies=("testclient", "10.0.0.0/8"))
    assert client.get("/api/whoami", headers=forwarded).json() == {"client": "ip:203.0.113.9"}


def test_cors_allows_configured_origins_only() -> None:
    client = make_client(cors_origins=("https://studio.example",))
    ok = client.get("/api/whoami", headers={"Origin": "https://studio.example"})
    assert ok.headers["access-control-allow-origin"] == "https://studio.example"
    other = client.get("/api/whoami", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_token_buckets_take_from_every_key_or_none() -> None:
    buckets = TokenBuckets(max_keys=2)
    slow, fast = RateLimit(rate_per_s=1, burst=1), RateLimit(rate_per_s=100, burst=5)
    assert buckets.take([("a", slow), ("b", fast)], now=0) == 0.0
    assert buckets.take([("a", slow), ("b", fast)], now=0.5) == pytest.approx(0.5)
    assert buckets.take([("b", fast)], now=0.5) == 0.0  # b lost no token to the refusal
    assert buckets.take([("a", slow)], now=1.0) == 0.0
    buckets.take([("c", slow)], now=1.0)
    assert len(buckets) == 2  # the least recently used key went


@pytest.mark.parametrize(
    ("security", "message"),
    [
        ({"api_key_hashes": ["abc"]}, "sha256"),
        ({"api_key_hashes": [hash_key("k")], "cors_origins": ["*"]}, '"*" is refused'),
        ({"cors_origins": ["javascript:alert(1)"]}, "not a browser origin"),
        ({"per_ip_rate": {"rate_per_s": 0, "burst": 1}}, "rate_per_s"),
    ],
)
def test_security_config_mistakes_fail_at_deploy(security: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AppConfig.model_validate({"security": security})


def test_queues_must_be_bounded_and_hold_every_accepted_job() -> None:
    with pytest.raises(ValidationError, match="must be bounded"):
        AppConfig.model_validate({"ingress": {"max_queued_requests": -1}})
    with pytest.raises(ValidationError, match="below registry.max_active_jobs"):
        AppConfig.model_validate(
            {"registry": {"max_active_jobs": 50}, "shape_texture": {"max_queued_requests": 10}}
        )
    with pytest.raises(ValidationError, match="max_active_per_client"):
        AppConfig.model_validate({"registry": {"max_active_jobs": 5, "max_active_per_client": 6}})


def test_the_cluster_config_bounds_queues_limits_rates_and_names_its_origins() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = config_from_yaml(root / "serve_config.yaml")
    security = config.security
    assert security.cors_origins and "*" not in security.cors_origins
    assert security.per_ip_rate is not None and security.per_key_rate is not None
    assert config.ingress.max_queued_requests > 0
    assert config.registry.journal_path is not None and config.registry.journal_path.is_absolute()
    assert config.retention.ttl_s is not None and config.retention.max_bytes is not None
    local = config_from_yaml(root / "configs" / "local.yaml")
    assert "*" not in local.security.cors_origins


def test_every_429_and_503_says_when_to_come_back_and_a_401_how_to_authenticate() -> None:
    from serve_app import errors
    from serve_app.api.errors import render_error

    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.OrfeasError)
    ]
    assert any(c.status_code == 429 for c in classes) and any(c.status_code == 503 for c in classes)
    for cls in classes:
        response = render_error(cls("x"))
        if cls.status_code in (429, 503):
            assert int(response.headers["Retry-After"]) >= 1, cls
        else:
            assert "Retry-After" not in response.headers, cls
    told = render_error(errors.RateLimitedError("slow down", retry_after_s=7.2))
    assert told.headers["Retry-After"] == "8"  # rounded up, never sooner than said
    assert render_error(errors.UnauthorizedError("key?")).headers["WWW-Authenticate"] == "Bearer"


def test_refusals_of_the_guard_are_the_services_own_errors() -> None:
    client = make_client(api_key_hashes=(hash_key(KEY),), max_body_bytes=10)
    refused = client.post("/api/echo", json={"a": "b"})
    assert refused.status_code == 401
    assert refused.json() == {
        "error": {
            "code": "unauthorized",
            "message": "an API key is required: send Authorization: Bearer <key> or X-API-Key",
        }
    }
    too_big = client.post("/api/echo", json={"a": "x" * 50}, headers={"X-API-Key": KEY})
    assert too_big.json()["error"] == {
        "code": "payload_too_large",
        "message": "the request body is larger than 10 bytes",
        "limit_bytes": 10,
    }


def test_an_admin_key_is_accepted_and_sees_every_job() -> None:
    admin = "admin-key"
    client = make_client(api_key_hashes=(hash_key(KEY),), admin_key_hashes=(hash_key(admin),))
    assert client.get("/api/whoami", headers={"X-API-Key": admin}).status_code == 200
    ring = KeyRing((hash_key(KEY),), (hash_key(admin),))
    assert ring.identify(admin) == Viewer(key_id=hash_key(admin)[7:19], sees_all=True)
    assert ring.identify(KEY) == Viewer(key_id=hash_key(KEY)[7:19], sees_all=False)
    assert ring.identify("nope") is None
