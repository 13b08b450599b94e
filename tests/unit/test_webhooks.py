"""Webhook signatures, the address rules (no request forgery), the config and a
delivery's states."""

from __future__ import annotations

import asyncio
import ipaddress
import json

import pytest
from pydantic import ValidationError

from serve_app.registry.callbacks import encode
from serve_app.webhooks import signing
from serve_app.webhooks.addresses import (
    CallbackRefusedError,
    checked_address,
    own_networks,
    parse_target,
    refusal,
)
from serve_app.webhooks.config import WebhookConfig
from serve_app.webhooks.records import (
    Attempt,
    Delivery,
    DeliveryState,
    Subscription,
    TargetKind,
)

SECRET = "whsec-test"
CONFIG = WebhookConfig(secret=SECRET, http_hosts=("127.0.0.1",), internal_hosts=("127.0.0.1",))


def test_a_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"event":"job.completed"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signing.signature(SECRET, 1700000000, body) == f"v1={expected}"


def test_verify_refuses_another_body_secret_or_an_old_timestamp() -> None:
    body = b'{"a":1}'
    header = signing.signature(SECRET, 1000, body)
    assert signing.verify(SECRET, "1000", body, header, now=1010)
    assert not signing.verify(SECRET, "1000", b'{"a":2}', header, now=1010)
    assert not signing.verify("other", "1000", body, header, now=1010)
    assert not signing.verify(SECRET, "1001", body, header, now=1010)
    assert not signing.verify(SECRET, "1000", body, header, now=1000 + 301)
    assert not signing.verify(SECRET, "soon", body, header, now=1010)


def test_headers_carry_signature_timestamp_and_delivery_id() -> None:
    headers = signing.headers(SECRET, 42, b"{}", "d" * 32, "job.failed")
    assert headers[signing.TIMESTAMP_HEADER] == "42"
    assert headers[signing.DELIVERY_HEADER] == "d" * 32
    assert headers[signing.EVENT_HEADER] == "job.failed"
    assert headers[signing.SIGNATURE_HEADER] == signing.signature(SECRET, 42, b"{}")


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.5", "private"),
        ("192.168.1.1", "private"),
        ("fd00::7", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("100.64.0.1", "non-public"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_inward_addresses_are_refused(address: str, why: str) -> None:
    assert refusal(ipaddress.ip_address(address), ()) == why


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), ()) is None


def test_the_clusters_own_networks_are_refused_even_when_public() -> None:
    config = WebhookConfig(secret=SECRET, blocked_networks=("34.120.0.0/16", "8.8.8.8"))
    own = own_networks(config)
    assert refusal(ipaddress.ip_address("34.120.7.9"), own) == "cluster"
    assert refusal(ipaddress.ip_address("8.8.8.8"), own) == "cluster"
    assert refusal(ipaddress.ip_address("8.8.4.4"), own) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/hook", "must use https"),
        ("ftp://example.com/hook", "https:// URL"),
        ("https:///hook", "https:// URL"),
        ("https://user:pw@example.com/hook", "user name or password"),
        ("https://example.com:99999/", "not a URL"),
        ("https://example.com/" + "a" * 2100, "longer than"),
    ],
)
def test_urls_the_service_will_not_send_to_are_422(url: str, message: str) -> None:
    with pytest.raises(CallbackRefusedError, match=message) as refused:
        parse_target(url, CONFIG)
    assert refused.value.status_code == 422
    assert refused.value.code == "callback_url_refused"


def test_http_only_to_named_hosts_and_ports_default_by_scheme() -> None:
    assert parse_target("http://127.0.0.1:8080/h", CONFIG).port == 8080
    target = parse_target("https://Example.COM/h?x=1", CONFIG)
    assert (target.scheme, target.host, target.port) == ("https", "example.com", 443)
    with pytest.raises(CallbackRefusedError, match="https"):
        parse_target("http://localhost/h", CONFIG)


def check(url: str, config: WebhookConfig) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return asyncio.run(checked_address(parse_target(url, config), config, ()))


def test_a_resolved_inward_address_is_refused_unless_the_host_is_internal() -> None:
    strict = WebhookConfig(secret=SECRET, http_hosts=("127.0.0.1", "localhost"))
    with pytest.raises(CallbackRefusedError, match="a loopback address"):
        check("http://localhost:9/h", strict)
    with pytest.raises(CallbackRefusedError, match="127.0.0.1, a loopback address"):
        check("http://127.0.0.1:9/h", strict)
    with pytest.raises(CallbackRefusedError, match="169.254.169.254, a link-local"):
        check("https://169.254.169.254/latest/meta-data/", strict)
    with pytest.raises(CallbackRefusedError, match=r"\[::1\]|::1, a loopback"):
        check("https://[::1]/h", strict)
    assert str(check("http://127.0.0.1:9/h", CONFIG)) == "127.0.0.1"


def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(CallbackRefusedError, match="does not resolve"):
        check("https://no-such-host.invalid/h", CONFIG)


def test_each_key_signs_with_its_own_secret_and_never_the_services() -> None:
    config = WebhookConfig(secret="service", key_secrets={"abc123abc123": "key-a"})
    assert config.secret_of(None) == "service"
    assert config.secret_of("abc123abc123") == "key-a"
    assert config.secret_of("000000000000") == ""
    assert WebhookConfig().secret_of(None) == ""


def test_backoff_doubles_up_to_its_cap_and_bad_config_fails() -> None:
    config = WebhookConfig(first_backoff_s=2, max_backoff_s=10)
    assert [config.backoff_s(n) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]
    with pytest.raises(ValidationError, match="first_backoff_s"):
        WebhookConfig(first_backoff_s=20, max_backoff_s=10)
    with pytest.raises(ValidationError, match="blocked_networks"):
        WebhookConfig(blocked_networks=("not-a-network",))
    with pytest.raises(ValidationError, match="extra"):
        WebhookConfig.model_validate({"secrett": "x"})


def delivery(give_up_at: float = 100.0) -> Delivery:
    subscription = Subscription(TargetKind.JOB, "a" * 32, "https://example.com/h", run=1)
    return Delivery.of(subscription, "job.completed", b"{}", now=0.0, retry_for_s=give_up_at)


def test_a_delivery_is_retried_until_a_2xx_or_its_time_is_up() -> None:
    d = delivery()
    assert d.state is DeliveryState.PENDING and d.next_try_at == 0.0
    d = d.after(Attempt(1.0, 500, None, 0.1), next_try_at=3.0)
    assert d.state is DeliveryState.PENDING and d.next_try_at == 3.0
    d = d.after(Attempt(3.0, None, "no answer within 10 s", 10.0), next_try_at=7.0)
    d = d.after(Attempt(7.0, 204, None, 0.1), next_try_at=15.0)
    assert d.state is DeliveryState.DELIVERED and d.next_try_at is None
    assert [a.status_code for a in d.attempts] == [500, None, 204]
    late = delivery(give_up_at=5.0).after(Attempt(1.0, 302, None, 0.1), next_try_at=6.0)
    assert late.state is DeliveryState.FAILED and late.next_try_at is None


def test_a_long_status_is_trimmed_to_the_body_limit() -> None:
    event = {"event": "job.failed", "job_id": "a" * 32, "status": "failed",
             "error": {"code": "x", "message": "m" * 5000}}  # fmt: skip
    assert json.loads(encode(event, 10_000)) == event
    short = json.loads(encode(event, 1024))
    assert short == {"event": "job.failed", "job_id": "a" * 32, "status": "failed",
                     "truncated": True}  # fmt: skip
