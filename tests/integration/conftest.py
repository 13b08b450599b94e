"""The integration suite's client; the session's Ray Serve and app come from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.client import Api, Service


@pytest.fixture(scope="session")
def api(service: Service) -> Iterator[Api]:
    with httpx.Client(base_url=service.url, timeout=60.0) as client:
        yield Api(client, service)
