"""Variants of a job's model, made once: the registry hands each to the MeshTools deployment
and records it with its job.

A variant is asked for by its content address (``VariantOrder.variant_id``, computed by the
ingress from the job, the mesh it is made from, the operation and its parameters), so the
registry, the one place every ingress replica reaches, is where identical requests meet:

- a variant the job already lists is answered at once;
- a variant being made is awaited by every request that asks for it (one build);
- otherwise one build starts here, not in the asking request, so a client that goes away
  cannot cancel it, and its result is recorded (and journaled) with the job whoever waits.

The build is bounded by ``mesh_tools.timeout_s`` (the MeshTools replica stops it then;
the caller gets a retryable 503) and each job keeps at most
``mesh_tools.max_variants_per_job``. An ingress replica hands the registry the
MeshTools handle as it starts; its name is journaled, so a restarted registry finds it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from serve_app.config import MeshToolsConfig
from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.variants import VariantBuilt, VariantInfo, VariantOrder
from serve_app.errors import (
    JobConflictError,
    JobNotFoundError,
    ModelUnavailableError,
    OrfeasError,
    VariantLimitError,
    VariantNotFoundError,
    WorkTimeoutError,
)
from serve_app.ray_errors import as_orfeas_error
from serve_app.registry.commits import Commits
from serve_app.registry.jobs import JobRecord, JobSnapshot
from serve_app.registry.journal import Ledger, Remembered
from serve_app.registry.monitor import JobMonitor
from serve_app.registry.table import JobTable

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle

logger = logging.getLogger(__name__)

#: Seconds the registry waits beyond ``mesh_tools.timeout_s`` for the deployment's answer.
REPLY_MARGIN_S = 10.0
#: The journal's record of the MeshTools deployment (application and deployment names).
MESH_TOOLS_META = "mesh_tools"

Reply = JobSnapshot | OrfeasError


class MeshToolsBackend(Protocol):
    """Where variants are made: the MeshTools deployment (or, in-process, its work)."""

    async def make_variant(self, order: VariantOrder) -> VariantBuilt: ...

    def names(self) -> dict[str, str] | None:
        """What to journal to find it again after a restart (None: nothing)."""
        ...


@dataclass(frozen=True)
class MeshToolsHandle:
    """The MeshTools deployment's handle as a backend (picklable: sent to the registry)."""

    handle: DeploymentHandle

    async def make_variant(self, order: VariantOrder) -> VariantBuilt:
        built: VariantBuilt = await self.handle.make_variant.remote(order)
        return built

    def names(self) -> dict[str, str] | None:
        return {"app": self.handle.app_name, "deployment": self.handle.deployment_name}


class Variants:
    """The registry's part that makes and records variants (on the actor's event loop)."""

    def __init__(
        self,
        table: JobTable,
        monitor: JobMonitor,
        commits: Commits,
        ledger: Ledger,
        policy: MeshToolsConfig,
    ) -> None:
        self.policy = policy
        self._table = table
        self._monitor = monitor
        self._commits = commits
        self._backend = Remembered(ledger, MESH_TOOLS_META, _handle)
        #: Builds under way, by variant id: every request for one awaits the same build.
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._tasks: set[asyncio.Task[Reply]] = set()

    def attach(self, backend: MeshToolsBackend) -> None:
        """Make variants there from now on (and after a restart, if it has names)."""
        self._backend.attach(backend, backend.names())

    def backend(self) -> MeshToolsBackend | None:
        """The attached backend, or the deployment the journal names (after a restart)."""
        return self._backend.get()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def make(self, order: VariantOrder) -> Reply:
        """The job with the variant ``order`` names: listed already, being made (awaited),
        or made now. 404 unknown job or base variant, 409 job not completed, its model
        replaced meanwhile, or its variants at the limit."""
        record = self._table.find(order.job_id)
        if record is None:
            return JobNotFoundError(f"no job with id {order.job_id}", job_id=order.job_id)
        refusal = _check(record, order)
        if refusal is not None:
            return refusal
        if order.variant_id in record.variants:
            return self._monitor.snapshot(record)
        pending = self._pending.get(order.variant_id)
        if pending is None:
            limit = self.policy.max_variants_per_job
            if len(record.variants) >= limit:
                return VariantLimitError(
                    f"job {order.job_id} already has {limit} variants, the most one job keeps",
                    limit=limit,
                )
            backend = self.backend()
            if backend is None:
                return ModelUnavailableError(
                    "the mesh tools are not reachable yet", retryable=True, feature="mesh_tools"
                )
            task = asyncio.create_task(self._build(backend, record.run, order))
            self._tasks.add(task)
            self._pending[order.variant_id] = task
            task.add_done_callback(functools.partial(self._done, order.variant_id))
            pending = task
        return await asyncio.shield(pending)

    def _done(self, variant_id: str, task: asyncio.Task[Reply]) -> None:
        self._tasks.discard(task)
        if self._pending.get(variant_id) is task:
            del self._pending[variant_id]

    async def _build(self, backend: MeshToolsBackend, run: int, order: VariantOrder) -> Reply:
        # The MeshTools deployment stops the work itself at ``timeout_s`` and says so; the
        # margin lets that answer through before this wait gives up on a lost reply.
        wait_s = self.policy.timeout_s + REPLY_MARGIN_S
        try:
            built = await asyncio.wait_for(backend.make_variant(order), wait_s)
        except TimeoutError:
            logger.warning(
                "variant %s of job %s: no answer within %s s",
                order.variant_id,
                order.job_id,
                wait_s,
            )
            return WorkTimeoutError(
                f"the variant was not made within {wait_s:g} s; retry later",
                retry_after_s=max(1, round(wait_s / 4)),
            )
        except Exception as exc:  # the replica's own error (a 422, a 503), or a lost replica
            return as_orfeas_error(exc)
        info = VariantInfo(
            variant_id=order.variant_id,
            operation=order.operation,
            params=dict(order.params),
            base=order.base,
            faces=built.faces,
            watertight=built.watertight,
        )
        record = self._table.add_variant(order.job_id, run, info)
        if record is None:
            return JobConflictError(
                f"job {order.job_id} was run again while its variant was made; ask again",
                job_id=order.job_id,
            )
        closed = {True: "closed", False: "open", None: "closedness unknown"}[built.watertight]
        made = (
            f"variant {order.variant_id[:12]} made: {order.operation} {order.params}, "
            f"{built.faces} faces, {closed}"
        )
        self._commits.commit(record, event=("variant", made))
        return self._monitor.snapshot(record)


def _check(record: JobRecord, order: VariantOrder) -> OrfeasError | None:
    """Whether ``order`` can be made of the job as it is now."""
    job_id = record.job_id
    if record.status is not JobStatus.COMPLETED or record.result is None:
        return JobConflictError(
            f"job {job_id} is {record.status}; variants are made of a completed job's model",
            job_id=job_id,
            status=str(record.status),
        )
    if order.base is None:
        if order.base_key != record.result.artifact_key:
            return JobConflictError(
                f"job {job_id}'s model changed while the request was made; ask again",
                job_id=job_id,
            )
    elif order.base not in record.variants or order.base_key != order.base:
        return VariantNotFoundError(
            f"job {job_id} has no variant {order.base}", job_id=job_id, variant=order.base
        )
    return None


def _handle(names: dict[str, str]) -> MeshToolsBackend | None:
    try:
        from ray import serve

        return MeshToolsHandle(
            serve.get_deployment_handle(names["deployment"], app_name=names["app"])
        )
    except Exception as exc:  # Serve or the application is not (yet) there
        logger.info("the MeshTools deployment is not reachable yet: %s", exc)
        return None
