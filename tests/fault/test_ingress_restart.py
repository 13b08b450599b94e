"""An ingress replica dies mid-job: jobs run in the registry, not in requests."""

from __future__ import annotations

import pytest

from tests.client import Api, photo
from tests.fault.harness import FaultService, kill_replica, replica_names, wait_for_replicas

pytestmark = [
    pytest.mark.fault,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]


def test_an_ingress_restart_neither_cancels_nor_orphans_a_running_job(
    fault_service: FaultService, admin: Api
) -> None:
    admin.wait_ready()
    job_id = admin.upload(photo(size=320, unique=True))
    assert admin.generate(job_id, format="glb", quality=9).status_code == 202
    killed = kill_replica(fault_service.app, "Ingress")
    job = admin.wait(job_id, 120)  # answered by the other replica meanwhile
    assert (job["status"], job["run"], job["cancel_requested"]) == ("completed", 1, False), job
    assert killed not in replica_names(fault_service.app, "Ingress")
    wait_for_replicas(fault_service.app, "Ingress", 2)  # replaced: as the other tests expect
    admin.wait_ready()
    assert admin.client.get(f"/download/{job_id}/glb").status_code == 200
