"""A WebSocket's API key as a subprotocol token, answered with the service's subprotocol."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from starlette.websockets import WebSocketDisconnect

from serve_app.api.security import WS_SUBPROTOCOL, hash_key, key_protocol
from tests.unit.inprocess import app_config, in_process_service

KEY = "studio-key-with/odd+chars=="


def test_a_socket_takes_the_key_as_a_subprotocol_and_answers_with_orfeas_v1(
    tmp_path: Path,
) -> None:
    security = {"api_key_hashes": [hash_key(KEY)]}
    with in_process_service(app_config(tmp_path, security=security)) as service:
        job_id = service.completed_job(headers={"Authorization": f"Bearer {KEY}"})
        offered = [WS_SUBPROTOCOL, key_protocol(KEY)]
        with service.http.websocket_connect(f"/ws/jobs/{job_id}", subprotocols=offered) as ws:
            assert ws.accepted_subprotocol == WS_SUBPROTOCOL  # never the key's token
            first = ws.receive_json()
            assert first["job_id"] == job_id and first["status"] == "completed"
            with pytest.raises(WebSocketDisconnect) as ended:
                ws.receive_json()
            assert ended.value.code == 1000

        # The discouraged query form still works for old clients.
        query = f"api_key={quote(KEY, safe='')}"
        with service.http.websocket_connect(f"/ws/jobs/{job_id}?{query}") as ws:
            assert ws.accepted_subprotocol is None
            assert ws.receive_json()["job_id"] == job_id
            with pytest.raises(WebSocketDisconnect):
                ws.receive_json()

        for refused in ([WS_SUBPROTOCOL, key_protocol("wrong")], [WS_SUBPROTOCOL, "orfeas.key.%%"]):
            with (
                pytest.raises(WebSocketDisconnect) as closed,
                service.http.websocket_connect(f"/ws/jobs/{job_id}", subprotocols=refused),
            ):
                pass
            assert closed.value.code == 1008
