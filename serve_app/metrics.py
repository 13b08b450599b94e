"""Service metrics: counted once in the registry, exported to Prometheus and to Ray.

``ServiceMetrics`` holds the service-wide figures in plain Python (the registry owns
it, so every ingress replica reports the same numbers). ``render_prometheus`` turns a
snapshot into Prometheus text through a prometheus-client collector, and ``RayMetrics``
mirrors every record into ``ray.serve.metrics`` so the same figures reach Ray's metrics
endpoint (prefixed ``ray_``) and the Ray dashboard's Grafana.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

logger = logging.getLogger(__name__)

#: Upper bounds (seconds) of the stage-duration histogram buckets.
STAGE_BUCKETS_S: tuple[float, ...] = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name (without ``_total``), kind, help text and label names."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()


JOBS_SUBMITTED = MetricSpec(
    "orfeas_jobs_submitted", "counter", "Generation runs accepted", ("generator",)
)
JOBS_COMPLETED = MetricSpec(
    "orfeas_jobs_completed", "counter", "Runs that produced a model", ("generator",)
)
JOBS_FAILED = MetricSpec(
    "orfeas_jobs_failed", "counter", "Runs that ended in an error", ("generator",)
)
JOBS_CANCELLED = MetricSpec(
    "orfeas_jobs_cancelled", "counter", "Runs cancelled by a user", ("generator",)
)
CACHE_HITS = MetricSpec(
    "orfeas_cache_hits",
    "counter",
    "Runs completed from the content-addressed cache",
    ("generator",),
)
UPLOADS = MetricSpec("orfeas_uploads", "counter", "Images stored")
UPLOAD_BYTES = MetricSpec("orfeas_upload_bytes", "counter", "Bytes of images stored")
QUEUE_DEPTH = MetricSpec("orfeas_queue_depth", "gauge", "Runs accepted but not started")
ACTIVE_JOBS = MetricSpec("orfeas_active_jobs", "gauge", "Runs on a worker now")
STAGE_SECONDS = MetricSpec(
    "orfeas_stage_duration_seconds",
    "histogram",
    "Wall-clock seconds per pipeline stage of completed runs",
    ("stage", "generator", "quality"),
)

SPECS: tuple[MetricSpec, ...] = (
    JOBS_SUBMITTED,
    JOBS_COMPLETED,
    JOBS_FAILED,
    JOBS_CANCELLED,
    CACHE_HITS,
    UPLOADS,
    UPLOAD_BYTES,
    QUEUE_DEPTH,
    ACTIVE_JOBS,
    STAGE_SECONDS,
)

Labels = tuple[str, ...]

#: The counters labelled by generator, each shown as zero for every known one from the start.
GENERATOR_COUNTERS: tuple[MetricSpec, ...] = (
    JOBS_SUBMITTED,
    JOBS_COMPLETED,
    JOBS_FAILED,
    JOBS_CANCELLED,
    CACHE_HITS,
)


@dataclass
class HistogramSeries:
    """Bucket counts (not cumulative, one per bound plus +Inf), sum and count."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(STAGE_BUCKETS_S) + 1))
    sum: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(STAGE_BUCKETS_S, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*STAGE_BUCKETS_S, float("inf")), self.counts, strict=True):
            running += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return buckets


@dataclass(frozen=True)
class MetricsSnapshot:
    """A picklable copy of every series: name → labels → value (or histogram)."""

    values: dict[str, dict[Labels, float]]
    histograms: dict[str, dict[Labels, HistogramSeries]]


class MetricsSink:
    """Where records are mirrored besides the registry's own tables (no-op by default)."""

    def inc(self, spec: MetricSpec, labels: Labels, value: float) -> None: ...

    def set(self, spec: MetricSpec, labels: Labels, value: float) -> None: ...

    def observe(self, spec: MetricSpec, labels: Labels, value: float) -> None: ...


class ServiceMetrics:
    """The registry's service-wide counters, gauges and histograms."""

    def __init__(self, sink: MetricsSink | None = None) -> None:
        self._sink = sink or MetricsSink()
        self._values: dict[str, dict[Labels, float]] = {
            s.name: {} for s in SPECS if s.kind != "histogram"
        }
        self._histograms: dict[str, dict[Labels, HistogramSeries]] = {
            s.name: {} for s in SPECS if s.kind == "histogram"
        }
        for spec in (UPLOADS, UPLOAD_BYTES, QUEUE_DEPTH, ACTIVE_JOBS):
            self._values[spec.name][()] = 0.0

    def declare(self, spec: MetricSpec, *labels: str) -> None:
        """Show ``spec``'s series for ``labels`` (zero until its first event), so dashboards
        and alerts see it before anything happens. Only here: Ray's counters take no zero."""
        if len(labels) != len(spec.labels):
            raise ValueError(f"{spec.name} takes labels {spec.labels}, not {labels}")
        self._values[spec.name].setdefault(labels, 0.0)

    def inc(self, spec: MetricSpec, *labels: str, value: float = 1.0) -> None:
        series = self._values[spec.name]
        series[labels] = series.get(labels, 0.0) + value
        self._mirror(self._sink.inc, spec, labels, value)

    def set(self, spec: MetricSpec, value: float, *labels: str) -> None:
        if self._values[spec.name].get(labels) == value:
            return
        self._values[spec.name][labels] = value
        self._mirror(self._sink.set, spec, labels, value)

    def observe(self, spec: MetricSpec, value: float, *labels: str) -> None:
        self._histograms[spec.name].setdefault(labels, HistogramSeries()).observe(value)
        self._mirror(self._sink.observe, spec, labels, value)

    @staticmethod
    def _mirror(
        record: Callable[[MetricSpec, Labels, float], None],
        spec: MetricSpec,
        labels: Labels,
        value: float,
    ) -> None:
        try:
            record(spec, labels, value)
        except Exception as exc:  # an exporter problem must never fail a job
            logger.warning("could not export metric %s: %s", spec.name, exc)

    def snapshot(self) -> MetricsSnapshot:
        return MetricsSnapshot(
            values={name: dict(series) for name, series in self._values.items()},
            histograms={
                name: {
                    labels: HistogramSeries(list(h.counts), h.sum, h.count)
                    for labels, h in series.items()
                }
                for name, series in self._histograms.items()
            },
        )


class SnapshotCollector:
    """A prometheus-client collector that yields one ``MetricsSnapshot``."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        for spec in SPECS:
            labels = list(spec.labels)
            family: Any
            if spec.kind == "histogram":
                family = HistogramMetricFamily(spec.name, spec.help, labels=labels)
                for key, series in sorted(self._snapshot.histograms.get(spec.name, {}).items()):
                    family.add_metric(list(key), series.cumulative(), series.sum)
            else:
                cls = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
                family = cls(spec.name, spec.help, labels=labels)
                for key, value in sorted(self._snapshot.values.get(spec.name, {}).items()):
                    family.add_metric(list(key), value)
            yield family


def render_prometheus(snapshot: MetricsSnapshot) -> tuple[bytes, str]:
    """Prometheus text exposition of ``snapshot`` and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class RayMetrics(MetricsSink):
    """Mirrors records into ``ray.serve.metrics`` (Ray's endpoint adds the ``ray_`` prefix).

    Inside a Serve replica the deployment, replica and application tags are added by
    Ray; in the registry actor only our own labels are set.
    """

    def __init__(self) -> None:
        self._metrics: dict[str, Any] = {}

    def _metric(self, spec: MetricSpec) -> Any:
        metric = self._metrics.get(spec.name)
        if metric is None:
            from ray.serve import metrics as serve_metrics

            tag_keys: Any = spec.labels
            if spec.kind == "counter":
                metric = serve_metrics.Counter(spec.name, spec.help, tag_keys=tag_keys)
            elif spec.kind == "gauge":
                metric = serve_metrics.Gauge(spec.name, spec.help, tag_keys=tag_keys)
            else:
                metric = serve_metrics.Histogram(
                    spec.name, spec.help, boundaries=list(STAGE_BUCKETS_S), tag_keys=tag_keys
                )
            self._metrics[spec.name] = metric
        return metric

    def inc(self, spec: MetricSpec, labels: Labels, value: float) -> None:
        self._metric(spec).inc(value, tags=dict(zip(spec.labels, labels, strict=True)))

    def set(self, spec: MetricSpec, labels: Labels, value: float) -> None:
        self._metric(spec).set(value, tags=dict(zip(spec.labels, labels, strict=True)))

    def observe(self, spec: MetricSpec, labels: Labels, value: float) -> None:
        self._metric(spec).observe(value, tags=dict(zip(spec.labels, labels, strict=True)))


#: Per-replica stage timings of the worker deployments (Ray only; tagged by replica).
REPLICA_STAGE_SECONDS = MetricSpec(
    "orfeas_replica_stage_seconds",
    "histogram",
    "Seconds a worker replica spent in each stage, as its own timer measured them",
    ("stage", "generator"),
)


class ReplicaStageTimings:
    """What a worker replica records about its own stages, through ``ray.serve.metrics``."""

    def __init__(self, generator: str) -> None:
        self._generator = generator
        self._ray = RayMetrics()

    def record(self, seconds: dict[str, float]) -> None:
        for stage, value in seconds.items():
            try:
                self._ray.observe(REPLICA_STAGE_SECONDS, (stage, self._generator), value)
            except Exception:  # metrics must never fail a job
                return
