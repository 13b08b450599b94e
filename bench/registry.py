"""Registry capacity: the real registry actor and its journal against a simulated cluster.

    make bench BENCH=registry [BENCH_ARGS="--workers 8,32,128,512 --rates 2,5,10,20,40,80"]
    .venv/bin/python bench/registry.py [--measure-s 10] [--replicas 2] [--interval-s 0.25]

Starts a local Ray with Serve (as the test suite does) and, per setting, a fresh
``RegistryActor`` with its SQLite journal in a temporary directory; around it
(tests/registry_sim.py): W simulated GPU workers (a Serve deployment whose
``max_ongoing_requests`` is W) that take runs through the registry's real deployment
handles and heartbeat every interval for the job's length, R ingress replicas' job views
following the change feed, and submitters uploading and submitting new jobs at a target
rate from 16 clients. A job lasts ``busy × W / rate`` seconds (at most ``--max-job-s``), so
that about ``busy`` of the fleet is working whatever the rate; submitting starts one job
length before the measured window, so the fleet is as busy as it gets when it opens.

Per setting: submits/s sustained, heartbeats/s absorbed, p50/p99 of ``submit`` and of a
heartbeat (as their callers saw them), the change feed's lag at the views, the registry
actor's CPU (1.0 = a whole core), the journal's writes/s, and after the fleet drained the
runs lost and leases expired. For each W the rates go up until a setting fails (p99 over
100 ms, a run lost or retried, or under 90 % of the rate kept) again when measured once more
(``--again``); the last that passed is the ceiling. Everything shares this machine's cores:
the simulated fleet and views cost CPU beside the registry, so the figures are a floor for
a registry on a machine of its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.registry_sim import Figures, Setting, SimCluster  # noqa: E402
from tests.serving import apply_serve_environment, start_ray_serve, stop_ray_serve  # noqa: E402

#: A heartbeat budget no fleet reaches: every worker beats at the configured interval.
UNBOUNDED = 1e9

HEADER = (
    "| W | submits/s asked | job s | submits/s kept | submit p50 / p99 ms | beats/s "
    "| beat p50 / p99 ms | beats late p99 ms | feed lag p50 / p99 ms | feed calls/s "
    "| registry CPU | fleet CPU | journal writes/s | lost | expired | within |"
)


def row(f: Figures, label: str = "") -> str:
    s = f.setting

    def ms(value: float) -> str:
        return f"{value * 1e3:.1f}"

    workers = f"{s.workers} {label}".strip()
    return (
        f"| {workers} | {s.rate:g} | {s.job_s:.1f} | {f.submits_per_s:.1f} "
        f"| {ms(f.submit.p50_s)} / {ms(f.submit.p99_s)} | {f.beats_per_s:.0f} "
        f"| {ms(f.beat.p50_s)} / {ms(f.beat.p99_s)} | {ms(f.beat_late_p99_s)} "
        f"| {ms(f.feed_lag.p50_s)} / {ms(f.feed_lag.p99_s)} | {f.feed_calls_per_s:.0f} "
        f"| {f.cpu_share:.2f} | {f.fleet_cpu_share:.2f} | {f.journal_writes_per_s:.0f} "
        f"| {f.lost}{' ' + str(f.lost_by) if f.lost else ''} | {f.expired} "
        f"| {'yes' if f.within() else 'no'} |"
    )


def numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="8,32,128,512", help="W values, comma-separated")
    parser.add_argument("--rates", default="2,5,10,20,40,80", help="submits/s, ascending")
    parser.add_argument("--measure-s", type=float, default=10.0)
    parser.add_argument("--replicas", type=int, default=2, help="ingress views (R)")
    parser.add_argument("--interval-s", type=float, default=0.25, help="heartbeat interval")
    parser.add_argument("--lease-s", type=float, default=10.0)
    parser.add_argument("--busy", type=float, default=0.9, help="share of the fleet at work")
    parser.add_argument("--max-job-s", type=float, default=20.0)
    parser.add_argument("--all", action="store_true", help="every rate, past a failure too")
    parser.add_argument(
        "--again",
        type=int,
        default=1,
        help="times a setting that failed is measured again before it counts as failed "
        "(a shared machine's load comes in bursts longer than a 10 s window)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="each setting twice, back to back: as before the heartbeat budget and the "
        "views' poll gap (rows 'before'), then as configured ('after')",
    )
    args = parser.parse_args()

    apply_serve_environment()
    start_ray_serve()
    cluster = SimCluster()
    ceilings: dict[int, float | None] = {}
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    try:
        with tempfile.TemporaryDirectory(prefix="registry-bench-") as tmp:
            for n, workers in enumerate(int(w) for w in numbers(args.workers)):
                ceilings[workers] = None
                for rate in numbers(args.rates):
                    job_s = min(args.max_job_s, args.busy * workers / rate)
                    setting = Setting(
                        workers=workers,
                        rate=rate,
                        job_s=job_s,
                        measure_s=args.measure_s,
                        warmup_s=job_s,
                        replicas=args.replicas,
                        interval_s=args.interval_s,
                        lease_s=args.lease_s,
                    )
                    if args.compare:
                        before = replace(setting, beat_budget_per_s=UNBOUNDED, poll_gap_s=0.0)
                        old = cluster.run(before, Path(tmp) / f"w{n}-r{rate:g}-before")
                        print(row(old, "before"), flush=True)
                    for attempt in range(1 + args.again):
                        path = Path(tmp) / f"w{n}-r{rate:g}-{attempt}"
                        figures = cluster.run(setting, path)
                        print(row(figures, "after" if args.compare else ""), flush=True)
                        if figures.within():
                            break
                    if figures.within():
                        ceilings[workers] = rate
                    elif not args.all:
                        break
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print("ceiling (highest rate within p99 100 ms, nothing lost, rate kept):")
        for workers, ceiling in ceilings.items():
            kept = f"{ceiling:g} submits/s" if ceiling else "below the lowest"
            print(f"  W={workers}: {kept}")
    finally:
        cluster.close()
        stop_ray_serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
