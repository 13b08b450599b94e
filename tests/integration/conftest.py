"""The integration suite's clients; the session's Ray Serve and apps come from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.client import Api, Service


@pytest.fixture(scope="session")
def api(service: Service) -> Iterator[Api]:
    with httpx.Client(base_url=service.url, timeout=60.0) as client:
        yield Api(client, service)


@pytest.fixture(scope="session")
def text_app(text_service: Service) -> Service:
    """The text application once it is ready: its text-to-image model loaded."""
    with httpx.Client(base_url=text_service.url, timeout=60.0) as client:
        Api(client, text_service).wait_ready()
    return text_service
