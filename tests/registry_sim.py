"""A simulated cluster around the real registry actor: GPU workers, ingress replicas, submitters.

Used by ``bench/registry.py`` (the sweep) and ``tests/integration/test_registry_capacity.py``
(a quick run). The registry is the real ``RegistryActor`` with its SQLite journal on disk,
created the way ``build_app`` creates it, and runs are dispatched to it through real Serve
deployment handles; only what surrounds it is simulated, on the same local Ray:

- ``SimWorker`` as deployment ``SimGpu`` (one replica, ``max_ongoing_requests`` = W): W GPU
  workers. A run's ``build`` beats as ``deployments.worker.RunReporter`` does (a beat as it
  starts, one per interval through shape, texture and export for the job's length, one as
  it ends; True stops it) and returns a result, with no model work. As ``SimCutter`` it is
  the background-removal stage: a beat at 0 and one at 1 (the hand-over).
- ``SimIngress`` (an actor): R job views following the change feed, as the ingress
  replicas' do, timing how long each change took to reach them.
- ``submit_at_rate`` (in the caller's process): uploads and submits at a target rate,
  open loop, from 16 clients.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.actor import ActorHandle

from serve_app.contracts.jobs import JobStatus
from serve_app.contracts.params import GenerationParams
from serve_app.contracts.runs import JobTicket, RunRequest, RunResult, UploadInfo
from serve_app.contracts.stages import Stage
from serve_app.errors import JobCancelledError, OrfeasError
from serve_app.registry.client import RegistryClient
from serve_app.registry.feeds import Changes
from serve_app.registry.jobs import JobSnapshot
from serve_app.registry.leases import Beat
from serve_app.registry.view import POLL_GAP_S, JobView

NAMESPACE = "orfeas"
REQUEST = RunRequest(params=GenerationParams(quality=2), format="glb", generator="inflate")
#: The model stages a simulated run goes through, each a third of its length.
MODEL_STAGES = (Stage.SHAPE_GENERATION, Stage.TEXTURE_SYNTHESIS, Stage.EXPORT)
#: Clients the submitters take turns as (admission counts each one's share).
CLIENTS = 16


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank; 0 when there are none."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Latencies:
    """How many, and the p50 and p99 in seconds, of a kind of call."""

    count: int
    p50_s: float
    p99_s: float

    @classmethod
    def of(cls, values: list[float]) -> Latencies:
        return cls(len(values), percentile(values, 0.5), percentile(values, 0.99))


class SimWorker:
    """Simulated workers: each ongoing ``build`` is one busy GPU worker; no model work.

    Configured through Serve's ``user_config`` (``reconfigure``): the registry's name and
    namespace and the job length; the registry's answers say how often to beat.
    """

    def __init__(self) -> None:
        self._registry: ActorHandle | None = None
        self._job_s = 1.0
        self._latencies: list[float] = []
        #: How late each beat was sent against its schedule (the simulator's own lag).
        self._late: list[float] = []
        self._stopped = 0
        self._cpu_s = time.process_time()

    def reconfigure(self, config: dict[str, Any]) -> None:
        self._registry = ray.get_actor(config["registry"], namespace=config["namespace"])
        self._job_s = float(config["job_s"])

    async def generator_version(self, name: str) -> str:
        """What a ShapeTexture replica answers before a generator's first run (cache keys)."""
        return "sim"

    async def remove(self, ticket: JobTicket) -> str:
        """The background-removal stage: its first beat, and the beat that hands it over."""
        await self._beat(ticket, Stage.BACKGROUND_REMOVAL, 0.0)
        await self._beat(ticket, Stage.BACKGROUND_REMOVAL, 1.0)
        return ticket.upload.sha256

    async def build(self, ticket: JobTicket, cutout: str) -> RunResult:
        """Shape, texture and export for the job's length, beating as often as the
        registry's last answer asks."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + self._job_s
        due = start + await self._beat(ticket, MODEL_STAGES[0], 0.0)
        while due < end:
            await asyncio.sleep(max(0.0, due - loop.time()))
            self._late.append(max(0.0, loop.time() - due))
            done = (due - start) / self._job_s * len(MODEL_STAGES)
            index = min(len(MODEL_STAGES) - 1, int(done))
            due += await self._beat(ticket, MODEL_STAGES[index], done - index)
        await asyncio.sleep(max(0.0, end - loop.time()))
        await self._beat(ticket, MODEL_STAGES[-1], 1.0)
        return RunResult(
            artifact_key=ticket.artifact_key or ticket.upload.sha256,
            formats=(ticket.request.format,),
            generator=ticket.request.generator,
            generator_version=ticket.generator_version or "sim",
        )

    async def _beat(self, ticket: JobTicket, stage: Stage, fraction: float) -> float:
        """One heartbeat; the seconds until the next one, as the registry asks."""
        assert self._registry is not None, "reconfigure names the registry"
        sent = time.perf_counter()
        beat: Beat = await self._registry.heartbeat.remote(
            ticket.job_id, ticket.run, stage, fraction
        )
        self._latencies.append(time.perf_counter() - sent)
        if beat.stop:
            self._stopped += 1
            raise JobCancelledError("the job was cancelled")
        return beat.interval_s

    async def stats(self, reset: bool) -> dict[str, Any]:
        """Beat latencies and lateness since the last reset; ``reset`` starts a new window."""
        cpu_s = time.process_time()
        figures = {
            "beats": Latencies.of(self._latencies),
            "late_p99_s": percentile(self._late, 0.99),
            "stopped": self._stopped,
            "cpu_s": cpu_s - self._cpu_s,
        }
        if reset:
            self._latencies, self._late, self._stopped, self._cpu_s = [], [], 0, cpu_s
        return figures


class _TimedClient(RegistryClient):
    """A job view's registry client that notes how long each change took to arrive."""

    def __init__(self, actor: ActorHandle, lags: list[float]) -> None:
        super().__init__(actor)
        self._lags = lags

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        reply = await super().call(method, *args, **kwargs)
        if isinstance(reply, Changes):
            now = time.time()
            for change in reply.changes:
                job = change.snapshot
                # A queued job republished for its new place keeps its old ``updated_at``.
                if job is not None and job.queue_position is None:
                    self._lags.append(max(0.0, now - job.updated_at))
        return reply


class SimIngress:
    """R ingress replicas' job views, in one actor, each following the change feed; it also
    asks the simulated fleet for its figures."""

    async def __init__(  # type: ignore[misc]
        self, registry: str, replicas: int, staleness_s: float, poll_gap_s: float
    ) -> None:
        actor = ray.get_actor(registry, namespace=NAMESPACE)
        self._lags: list[float] = []
        self._views = [
            JobView(_TimedClient(actor, self._lags), staleness_s, poll_gap_s=poll_gap_s)
            for _ in range(replicas)
        ]
        for view in self._views:
            view.start()

    async def lags(self, reset: bool) -> Latencies:
        """How long changes took from the registry to a view, since the last reset."""
        figures = Latencies.of(self._lags)
        if reset:
            self._lags.clear()
        return figures

    async def statuses(self, job_ids: list[str]) -> list[dict[str, str | None]]:
        """Each view's status of each job (None: not held)."""
        return [
            {j: str(job.status) if (job := view.peek(j)) else None for j in job_ids}
            for view in self._views
        ]

    async def fleet_stats(self, backends: Any, reset: bool) -> list[dict[str, Any]]:
        """The GPU workers' and the cutter's beat figures (each deployment has one replica),
        asked here: a handle's calls need an event loop that outlives them."""
        return [dict(await h.stats.remote(reset)) for h in (backends.shape, backends.background)]

    async def stop(self) -> None:
        for view in self._views:
            await view.stop()


@dataclass
class Submissions:
    """What the submitters saw: the accepted jobs, refusals, and when each submit took how long."""

    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    #: (monotonic time sent, seconds) of every submit call.
    latencies: list[tuple[float, float]] = field(default_factory=list)
    #: From the first submit to the last answer.
    seconds: float = 0.0

    @property
    def kept_per_s(self) -> float:
        """Accepted submits per second, from the first submit to the last answer."""
        return len(self.accepted) / self.seconds if self.seconds else 0.0

    def window(self, start: float, end: float) -> list[float]:
        return [s for sent, s in self.latencies if start <= sent < end]


async def submit_at_rate(
    registry: ActorHandle, rate: float, duration_s: float, out: Submissions
) -> None:
    """Upload and submit a new job every ``1 / rate`` s for ``duration_s`` (open loop)."""

    async def one(n: int) -> None:
        job_id = uuid.uuid4().hex
        sha = hashlib.sha256(job_id.encode()).hexdigest()
        upload = UploadInfo(sha256=sha, size_bytes=40_000, media_type="image/jpeg")
        await registry.register_upload.remote(job_id, upload, None)
        sent = time.monotonic()
        reply = await registry.submit.remote(job_id, REQUEST, f"client-{n % CLIENTS}")
        out.latencies.append((sent, time.monotonic() - sent))
        if isinstance(reply, OrfeasError):
            out.refused += 1
        else:
            out.accepted.append(job_id)

    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Task[None]] = []
    n = 0
    while n / rate < duration_s:
        await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        tasks.append(asyncio.create_task(one(n)))
        n += 1
    await asyncio.gather(*tasks)
    out.seconds = loop.time() - start


def actor_pid(actor: ActorHandle) -> int:
    pid: Any = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
    return int(pid)


def journal_of(storage_root: Path) -> Path:
    return storage_root / "registry" / "journal.sqlite3"


# -- one setting of the simulation -----------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """W workers, a submit rate, the job length and the windows of one simulated run."""

    workers: int
    rate: float
    job_s: float
    measure_s: float = 10.0
    #: Submitting before the measured window, so that the fleet is as busy as it gets.
    warmup_s: float = 0.0
    replicas: int = 2
    interval_s: float = 0.25
    lease_s: float = 10.0
    #: The registry's heartbeat budget (None: its default); the views' poll gap.
    beat_budget_per_s: float | None = None
    poll_gap_s: float = POLL_GAP_S


@dataclass(frozen=True)
class Figures:
    """What one setting measured: rates per second of the measured window, except
    ``submits_per_s``, the accepted submits over the whole time of submitting."""

    setting: Setting
    submits_per_s: float
    refused: int
    submit: Latencies
    beats_per_s: float
    beat: Latencies
    #: p99 of how late the simulated workers sent their beats (the simulator's own lag).
    beat_late_p99_s: float
    feed_lag: Latencies
    feed_calls_per_s: float
    #: CPU seconds the registry actor used per second (1.0: one whole core).
    cpu_share: float
    #: CPU seconds per second of the process of the simulated GPU workers.
    fleet_cpu_share: float
    journal_writes_per_s: float
    accepted: int
    #: Accepted runs that did not complete once the fleet drained.
    lost: int
    #: Those runs by how they stood: their status, and error code if they failed.
    lost_by: dict[str, int]
    #: Jobs whose lease expired or whose run was retried (a worker presumed lost).
    expired: int
    #: Whether every ingress view ended with the registry's status of every job.
    views_agree: bool

    def within(self, limit_s: float = 0.1) -> bool:
        """p99 of submit and heartbeat within ``limit_s``, the rate kept, nothing lost."""
        return (
            self.submit.p99_s <= limit_s
            and self.beat.p99_s <= limit_s
            and self.lost == 0
            and self.expired == 0
            and self.submits_per_s >= 0.9 * self.setting.rate
        )


def registry_args(storage_root: Path, name: str, setting: Setting) -> dict[str, Any]:
    """The application args the registry is created from: no admission limit in the way."""
    from tests.serving import app_args

    args = app_args(storage_root)
    args["registry"] = {
        "name": name,
        "heartbeat_interval_s": setting.interval_s,
        "lease_s": setting.lease_s,
        "max_active_jobs": 1_000,
        "max_active_per_client": 1_000,
    }
    if setting.beat_budget_per_s is not None:
        args["registry"]["heartbeat_budget_per_s"] = setting.beat_budget_per_s
    return args


class SimCluster:
    """The simulated fleet on the running Ray Serve, and the registry runs it serves."""

    def __init__(self, prefix: str = "registry-sim") -> None:
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self._runs = 0

    def run(self, setting: Setting, storage_root: Path) -> Figures:
        """A fresh registry (its journal under ``storage_root``) through ``setting``."""
        from serve_app.config import AppConfig
        from serve_app.registry.client import create_registry

        self._runs += 1
        name = f"{self.prefix}-{self._runs}"
        config = AppConfig.model_validate(registry_args(storage_root, name, setting))
        actor = create_registry(config)
        ingress: ActorHandle | None = None
        try:
            backends = self._deploy(name, setting)
            ray.get(actor.attach.remote(backends), timeout=60)
            staleness_s = config.registry.status_staleness_s
            ingress = (
                ray.remote(SimIngress)
                .options(num_cpus=0)
                .remote(name, setting.replicas, staleness_s, setting.poll_gap_s)
            )
            return asyncio.run(_measure(actor, ingress, backends, setting))
        finally:
            if ingress is not None:
                ray.kill(ingress)
            ray.kill(actor, no_restart=True)

    def close(self) -> None:
        from ray import serve

        for app in (f"{self.prefix}-cutter", f"{self.prefix}-gpu"):
            serve.delete(app)

    def _deploy(self, registry: str, setting: Setting) -> Any:
        """The fleet's two deployments, (re)configured for ``setting``; their handles."""
        from ray import serve

        from serve_app.registry.workers import Backends

        config = {
            "registry": registry,
            "namespace": NAMESPACE,
            "job_s": setting.job_s,
        }
        common: dict[str, Any] = {
            "num_replicas": 1,
            "ray_actor_options": {"num_cpus": 0},
            "user_config": config,
        }
        deployment: Any = serve.deployment
        cutter = deployment(SimWorker, name="SimCutter", max_ongoing_requests=10_000)
        gpu = deployment(SimWorker, name="SimGpu", max_ongoing_requests=setting.workers)
        handles = []
        for deployment, app in ((cutter, "cutter"), (gpu, "gpu")):
            name = f"{self.prefix}-{app}"
            serve.run(deployment.options(**common).bind(), name=name, route_prefix=None)
            handles.append(serve.get_deployment_handle(deployment.name, app_name=name))
        return Backends(background=handles[0], shape=handles[1])


@dataclass(frozen=True)
class _Counters:
    at: float
    cpu_s: float
    calls: dict[str, int]
    journal_writes: int


async def _counters(actor: ActorHandle, pid: int) -> _Counters:
    import psutil

    at = time.monotonic()
    times = psutil.Process(pid).cpu_times()
    calls = await actor.served_calls.remote()
    health = await actor.ping.remote()
    return _Counters(at, times.user + times.system, calls, health.journal_writes)


async def _measure(
    actor: ActorHandle, ingress: ActorHandle, backends: Any, setting: Setting
) -> Figures:
    pid = await asyncio.to_thread(actor_pid, actor)
    out = Submissions()
    submitting = asyncio.create_task(
        submit_at_rate(actor, setting.rate, setting.warmup_s + setting.measure_s, out)
    )
    await asyncio.sleep(setting.warmup_s)
    await ingress.fleet_stats.remote(backends, True)
    await ingress.lags.remote(True)
    begin = await _counters(actor, pid)
    await asyncio.sleep(setting.measure_s)
    end = await _counters(actor, pid)
    gpu, cutter = await ingress.fleet_stats.remote(backends, True)
    lags: Latencies = await ingress.lags.remote(True)
    await submitting
    wall = end.at - begin.at

    def per_s(method: str) -> float:
        return (end.calls.get(method, 0) - begin.calls.get(method, 0)) / wall

    lost_by, expired = await _outcome(actor, out.accepted, setting)
    agree = await _views_agree(actor, ingress, out.accepted)
    beat_latencies = Latencies(
        gpu["beats"].count + cutter["beats"].count,
        gpu["beats"].p50_s,
        max(gpu["beats"].p99_s, cutter["beats"].p99_s),
    )
    return Figures(
        setting=setting,
        submits_per_s=out.kept_per_s,
        refused=out.refused,
        submit=Latencies.of(out.window(begin.at, end.at)),
        beats_per_s=per_s("heartbeat"),
        beat=beat_latencies,
        beat_late_p99_s=gpu["late_p99_s"],
        feed_lag=lags,
        feed_calls_per_s=per_s("changes"),
        cpu_share=(end.cpu_s - begin.cpu_s) / wall,
        fleet_cpu_share=gpu["cpu_s"] / wall,
        journal_writes_per_s=(end.journal_writes - begin.journal_writes) / wall,
        accepted=len(out.accepted),
        lost=sum(lost_by.values()),
        lost_by=lost_by,
        expired=expired,
        views_agree=agree,
    )


async def _outcome(
    actor: ActorHandle, accepted: list[str], setting: Setting
) -> tuple[dict[str, int], int]:
    """(runs not completed by status and error, jobs whose lease expired or run was
    retried) once the fleet drained."""
    deadline = time.monotonic() + 2 * setting.job_s + setting.lease_s + 30
    while time.monotonic() < deadline:
        jobs = (await actor.ping.remote()).jobs
        if not jobs.get(str(JobStatus.QUEUED)) and not jobs.get(str(JobStatus.RUNNING)):
            break
        await asyncio.sleep(0.5)
    snapshots: list[Any] = await asyncio.gather(*(actor.get.remote(j) for j in accepted))
    lost: Counter[str] = Counter()
    for s in snapshots:
        if not isinstance(s, JobSnapshot):
            lost[type(s).__name__] += 1
        elif s.status is not JobStatus.COMPLETED:
            lost[f"{s.status} {(s.error or {}).get('code', '')}".strip()] += 1
    logs: list[Any] = await asyncio.gather(*(actor.job_log.remote(j) for j in accepted))
    expired = sum(
        any(e.event in ("lease_expired", "retried") for e in log.entries)
        or (isinstance(s, JobSnapshot) and s.run > 1)
        for log, s in zip(logs, snapshots, strict=True)
    )
    return dict(lost), expired


async def _views_agree(actor: ActorHandle, ingress: ActorHandle, accepted: list[str]) -> bool:
    """Whether every view comes to hold the registry's status of every accepted job."""
    snapshots: list[Any] = await asyncio.gather(*(actor.get.remote(j) for j in accepted))
    truth = {s.job_id: str(s.status) for s in snapshots if isinstance(s, JobSnapshot)}
    for _ in range(50):
        views = await ingress.statuses.remote(accepted)
        if all(view == truth for view in views):
            return True
        await asyncio.sleep(0.2)
    return False
