"""The front of the service: HAProxy on the HTTP port, forwarding to the ingress replicas'
own HTTP servers (direct ingress), as configs/serve.env sets it up."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.client import Service

pytestmark = pytest.mark.integration

LISTEN = "0A"  # the TCP state of a listening socket in /proc/net/tcp


def listeners() -> dict[int, str]:
    """Every TCP port listened on (IPv4), with the command line of the listening process."""
    inodes: dict[str, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == LISTEN:
            inodes[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    owners: dict[int, str] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                owners[inodes[target[8:-1]]] = cmdline.strip()
    return owners


def test_haproxy_answers_the_http_port_and_forwards_to_the_ingress_replicas(
    service: Service,
) -> None:
    by_port = listeners()
    port = urlparse(service.url).port
    assert port is not None and "haproxy" in by_port.get(port, ""), by_port.get(port)

    # Each ingress replica serves HTTP on a port of its own; the API answers there too.
    replica_ports = [p for p, cmd in by_port.items() if "ServeReplica:orfeas:Ingress" in cmd]
    assert replica_ports, by_port
    for replica_port in replica_ports:
        response = httpx.get(f"http://127.0.0.1:{replica_port}/health", timeout=10)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert httpx.get(f"{service.url}/health", timeout=10).json() == {"status": "ok"}
