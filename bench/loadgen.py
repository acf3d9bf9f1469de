"""Load generator: the whole collection pipeline at fleet scale on loopback, for a bounded time.

    scripts/with_postgres.sh .venv/bin/python bench/loadgen.py [--gpus 10000] [--endpoints 2500] [--duration 300]

What runs (every part real, on 127.0.0.1):
* Redis (`redis-server`, a throwaway instance) as the Celery broker, as in production;
* real Celery workers, one per queue: `scrape` (the scrape worker whose memory is watched), `ingest`, `rollup`;
* `--endpoints` simulated engines (bench/fleet.py: real engine-format pages whose counters grow), registered as
  ServingEndpoints;
* `--gpus` / 8 simulated nodes of 8 GPUs: every `--gpu-interval` seconds each node's collection cycle (a
  `NodeReading` as the NVML reader returns it, values varying) goes to queue `ingest` as `gpu_report_ingest_task`
  — what a node's worker does after reading NVML — spread evenly over the interval;
* this process plays Celery beat: `endpoints_scrape_schedule` every `--scrape-interval` seconds (batches of 250,
  `expires` = the interval, so a backlog is dropped, not replayed) and the usage and GPU rollups every minute.

Every `--sample` seconds it records: rows inserted per second (GpuSample, CounterSnapshot, UsageDelta, from
PostgreSQL's statistics), the broker's queue depths, lag (now − the newest GPU sample; the oldest endpoint's
last scrape), unhealthy endpoints, and the resident memory of the scrape worker's processes; at the end the
slope of that memory (least squares over the samples after the first minute). Prints one markdown section.

For a memory soak of the scrape worker: `--gpus 0 --duration 3600 --rss-log rss.csv` (scrapes only; the CSV
gets one line per sample: elapsed seconds, UTC time, RSS of all the worker's processes, of its largest child).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "factory_portal.settings")
os.environ["SCRAPE_ALLOW_LOOPBACK"] = "1"
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Workers run as in production: with DEBUG on, Django keeps the last 9,000 queries of every process (and Celery
# warns of a leak), which a memory soak would measure instead of the scrape path.
os.environ.setdefault("DEBUG", "0")

from bench.fleet import Fleet  # noqa: E402

GPUS_PER_NODE = 8
PREFIX = "load"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(tmp: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (`apt-get install redis-server`)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp), "--loglevel", "warning"], stdout=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("redis-server did not start")


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat[stat.rindex(")") + 2:].split()[1] == str(pid):
                out.append(int(entry))
    return out


def cpu_s(pids: list[int], *, with_reaped: bool = False) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / tick
        if with_reaped:
            total += (int(fields[13]) + int(fields[14])) / tick
    return total


def tree_cpu_s(root: int) -> float:
    """CPU of a process, its live children and its reaped children (a Celery worker, PostgreSQL)."""
    return cpu_s([root], with_reaped=True) + cpu_s(children_of(root))


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den * 3600


def setup(args: argparse.Namespace, urls: list[str]) -> tuple[list[tuple[int, str]], list[int]]:
    """Partner, site, nodes (GPUs are created by their first report, as in production) and endpoints."""
    from decimal import Decimal

    from bench.common import setup_django

    setup_django()
    from sites.models import Node, Partner, ServingEndpoint, Site

    partner, _ = Partner.objects.get_or_create(slug="loadgen", defaults={"name": "Load generator"})
    site, _ = Site.objects.get_or_create(slug="loadgen-site", defaults=dict(
        partner=partner, name="Load site", country="NO", city="Oslo", contract_date=dt.date(2026, 1, 5),
        power_capacity_kw=Decimal("20000"), pue=Decimal("1.2"), electricity_price_per_kwh=Decimal("0.08"),
        currency="USD", capex_per_gpu=Decimal("30000"), amortization_months=48, opex_per_gpu_hour=Decimal("0.1")))
    ServingEndpoint.objects.filter(site=site).delete()
    ServingEndpoint.objects.filter(enabled=True).exclude(site=site).update(enabled=False)  # only ours are polled
    ServingEndpoint.objects.bulk_create([
        ServingEndpoint(site=site, name=f"{PREFIX}-{i}", metrics_url=url, engine="auto") for i, url in enumerate(urls)])
    n_nodes = -(-args.gpus // GPUS_PER_NODE)
    existing = set(Node.objects.filter(site=site).values_list("hostname", flat=True))
    Node.objects.bulk_create([Node(site=site, hostname=f"{PREFIX}-node-{i:05d}") for i in range(n_nodes)
                              if f"{PREFIX}-node-{i:05d}" not in existing])
    nodes = list(Node.objects.filter(site=site).order_by("hostname").values_list("pk", "hostname"))[:n_nodes]
    endpoint_ids = list(ServingEndpoint.objects.filter(site=site).values_list("pk", flat=True))
    # As beat's `gpu_sample_partitions_ensure_ahead_task` does in production: today's and the next days'
    # partitions exist before the first report (two ingest workers creating the same day at once can collide).
    from telemetry.retention import gpu_sample_partitions_ensure_ahead

    gpu_sample_partitions_ensure_ahead(today=dt.datetime.now(dt.UTC).date())
    return nodes, endpoint_ids


def node_payload(node_index: int, hostname: str, ts: dt.datetime, rng: random.Random, energy: list[int]) -> dict:
    """One collection cycle of a node of 8 H100s, as `reading_to_dict(NvmlReader.read())` gives it."""
    from telemetry.collectors.nvml import GpuReading, NodeReading, reading_to_dict

    gpus = []
    for i in range(GPUS_PER_NODE):
        k = node_index * GPUS_PER_NODE + i
        power = rng.uniform(250, 690)
        energy[k] += int(power * 10_000)  # mJ over a 10 s cycle
        gpus.append(GpuReading(
            uuid=f"GPU-{PREFIX}-{k:07d}", index=i, ts=ts, name="NVIDIA H100 80GB HBM3", util_pct=rng.randint(0, 100),
            memory_util_pct=rng.randint(0, 100), memory_used_bytes=rng.randint(0, 80) * 2**30,
            memory_total_bytes=80 * 2**30, power_w=round(power, 2), energy_mj=energy[k],
            temperature_c=rng.randint(30, 80), sm_clock_mhz=1980, mem_clock_mhz=2619, throttle_reasons=0,
            ecc_uncorrected_errors=0, retired_pages_pending=None, mig_mode=False,
            unsupported=(("retired_pages_pending", "NVMLError_NotSupported: Not Supported"),)))
    return reading_to_dict(NodeReading(hostname=hostname, ts=ts, driver_version="570.133.20",
                                       cuda_driver_version="12.8", gpus=tuple(gpus)))


def inserted_rows() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        # Statistics are per backend until the transaction ends; these are the workers' committed writes.
        cursor.execute(
            "SELECT CASE WHEN relname LIKE 'telemetry_gpusample%%' THEN 'gpu' "
            # Counter snapshots are day partitions too: their inserts are counted on the partitions.
            "WHEN relname LIKE 'telemetry_countersnapshot%%' THEN 'telemetry_countersnapshot' ELSE relname END, "
            "sum(n_tup_ins), sum(n_tup_upd) FROM pg_stat_user_tables WHERE relname LIKE 'telemetry_gpusample%%' "
            "OR relname LIKE 'telemetry_countersnapshot%%' "
            "OR relname IN ('telemetry_usagedelta', 'sites_servingendpoint') GROUP BY 1")
        rows = {}
        for name, inserted, updated in cursor.fetchall():
            # One UPDATE of its endpoint row per scrape recorded (health, last_scraped_at).
            rows["scrapes" if name == "sites_servingendpoint" else name] = int(
                updated if name == "sites_servingendpoint" else inserted)
        return rows


def lags(endpoint_ids: list[int]) -> tuple[float | None, float | None, int]:
    """(now − newest GPU sample, now − oldest endpoint scrape, unhealthy endpoints)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM now() - max(ts)) FROM telemetry_gpusample "
                       "WHERE ts > now() - interval '10 minutes'")
        gpu = cursor.fetchone()[0]
        cursor.execute("SELECT extract(epoch FROM now() - min(last_scraped_at)), "
                       "count(*) FILTER (WHERE health = 'unhealthy') FROM sites_servingendpoint WHERE id = ANY(%s)",
                       [endpoint_ids])
        scrape, unhealthy = cursor.fetchone()
    return (None if gpu is None else float(gpu)), (None if scrape is None else float(scrape)), int(unhealthy)


def main() -> int:  # noqa: C901 - one procedure: start, drive, sample, stop, report
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=10_000)
    ap.add_argument("--endpoints", type=int, default=2_500)
    ap.add_argument("--duration", type=float, default=300, help="seconds of load after the warm-up")
    ap.add_argument("--warmup", type=float, default=30)
    ap.add_argument("--sample", type=float, default=10)
    ap.add_argument("--gpu-interval", type=float, default=10)
    ap.add_argument("--scrape-interval", type=float, default=15)
    ap.add_argument("--fleet-processes", type=int, default=4)
    ap.add_argument("--scrape-concurrency", type=int, default=2, help="prefork processes of the scrape worker")
    ap.add_argument("--ingest-concurrency", type=int, default=2)
    ap.add_argument("--rss-log", type=Path, default=None,
                    help="also write the scrape worker's resident memory per sample to this CSV file (for soaks)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="loadgen-"))
    procs: list[subprocess.Popen] = []
    rss_log = None
    fleet = Fleet(args.endpoints, args.fleet_processes, prefix=PREFIX)
    try:
        redis_proc, broker = start_redis(tmp)
        procs.append(redis_proc)
        os.environ["CELERY_BROKER_URL"] = broker
        os.environ["CELERY_RESULT_BACKEND"] = ""
        os.environ["ENGINE_SCRAPE_INTERVAL_S"] = str(int(args.scrape_interval))
        nodes, endpoint_ids = setup(args, fleet.urls)

        from django.db import connection

        from telemetry.metering_services import endpoints_scrape_schedule
        from telemetry.tasks.gpu import gpu_report_ingest_task, gpu_rollups_run_task
        from telemetry.tasks.metering import usage_rollup_task

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        postmaster = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])

        celery = [sys.executable, "-m", "celery", "-A", "factory_portal", "worker", "--without-gossip",
                  "--without-mingle", "--without-heartbeat", "-l", "WARNING", "--prefetch-multiplier", "1"]
        # stdout carries the markdown section: the workers' banners go nowhere, their errors to stderr.
        quiet = {"cwd": ROOT, "start_new_session": True, "stdout": subprocess.DEVNULL}
        workers = {
            "scrape": subprocess.Popen([*celery, "-Q", "scrape", "-c", str(args.scrape_concurrency),
                                        "-n", "scrape@loadgen"], **quiet),
            "ingest": subprocess.Popen([*celery, "-Q", "ingest", "-c", str(args.ingest_concurrency),
                                        "-n", "ingest@loadgen"], **quiet),
            "rollup": subprocess.Popen([*celery, "-Q", "rollup", "-c", "1", "-n", "rollup@loadgen"], **quiet),
        }
        procs += workers.values()
        import redis

        broker_client = redis.Redis.from_url(broker)

        rng = random.Random(7)
        energy = [rng.randint(10**9, 10**10) for _ in range(len(nodes) * GPUS_PER_NODE)]
        started = time.monotonic()
        end = started + args.warmup + args.duration
        next_scrape = started
        next_rollup = started + 60
        next_sample = started + args.warmup
        gpu_step = args.gpu_interval / max(1, len(nodes))
        next_gpu = started
        node_cursor = 0
        sent = {"reports": 0, "scrape_batches": 0}
        samples: list[dict] = []
        prev: dict | None = None
        if args.rss_log is not None:
            rss_log = args.rss_log.open("w")
            rss_log.write("elapsed_s,utc,scrape_rss_mib,largest_child_rss_mib,children\n")
        print(f"loadgen: {len(nodes)} nodes × {GPUS_PER_NODE} GPUs, {len(endpoint_ids)} endpoints, "
              f"{args.warmup:.0f} s warm-up + {args.duration:.0f} s", file=sys.stderr, flush=True)
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if now >= next_scrape:
                sent["scrape_batches"] += endpoints_scrape_schedule(batch_size=250, expires_s=args.scrape_interval)
                next_scrape += args.scrape_interval
            if now >= next_rollup:
                usage_rollup_task.apply_async(queue="rollup", expires=60)
                gpu_rollups_run_task.apply_async(queue="rollup", expires=60)
                next_rollup += 60
            # Node reports due by now, each stamped with its own cycle time, spread over the interval.
            while nodes and next_gpu <= now:
                node_id, hostname = nodes[node_cursor]
                ts = dt.datetime.now(dt.UTC)
                gpu_report_ingest_task.apply_async(
                    args=[node_id, node_payload(node_cursor, hostname, ts, rng, energy)], queue="ingest")
                sent["reports"] += 1
                node_cursor = (node_cursor + 1) % len(nodes)
                next_gpu += gpu_step
            if now >= next_sample:
                scrape_pids = [workers["scrape"].pid, *children_of(workers["scrape"].pid)]
                gpu_lag, scrape_lag, unhealthy = lags(endpoint_ids)
                point = {
                    "t": now - started, "rows": inserted_rows(), "sent": dict(sent),
                    "depth": {q: broker_client.llen(q) for q in ("scrape", "ingest", "rollup")},
                    "gpu_lag_s": gpu_lag, "scrape_lag_s": scrape_lag, "unhealthy": unhealthy,
                    "scrape_rss_mib": sum(rss_kib(p) for p in scrape_pids) / 1024,
                    "scrape_child_rss_mib": [rss_kib(p) / 1024 for p in scrape_pids[1:]],
                    "cpu": {name: tree_cpu_s(w.pid) for name, w in workers.items()}
                    | {"postgres": tree_cpu_s(postmaster), "fleet": cpu_s(fleet.pids), "loadgen": time.process_time(),
                       "redis": cpu_s([redis_proc.pid])},
                }
                if prev is not None:
                    dt_s = point["t"] - prev["t"]
                    point["rate"] = {k: (point["rows"].get(k, 0) - prev["rows"].get(k, 0)) / dt_s
                                     for k in ("gpu", "scrapes", "telemetry_countersnapshot", "telemetry_usagedelta")}
                    point["cpu_share"] = {k: (point["cpu"][k] - prev["cpu"][k]) / dt_s for k in point["cpu"]}
                    samples.append(point)
                    print(f"t={point['t']:.0f}s gpu rows/s {point['rate']['gpu']:.0f} scrapes/s "
                          f"{point['rate']['scrapes']:.0f} depth {point['depth']} gpu lag "
                          f"{gpu_lag} scrape lag {scrape_lag} unhealthy {unhealthy} scrape RSS "
                          f"{point['scrape_rss_mib']:.1f} MiB", file=sys.stderr, flush=True)
                if rss_log is not None:
                    rss_log.write(f"{point['t']:.1f},{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ},"
                                  f"{point['scrape_rss_mib']:.1f},{max(point['scrape_child_rss_mib'], default=0):.1f},"
                                  f"{len(point['scrape_child_rss_mib'])}\n")
                    rss_log.flush()
                prev = point
                next_sample += args.sample
            wake = min(next_scrape, next_sample, end, *([next_gpu] if nodes else []))
            time.sleep(max(0.0, wake - time.monotonic()))
    finally:
        if rss_log is not None:
            rss_log.close()
        # Workers first (a warm shutdown still talks to the broker), Redis last.
        for group in (procs[1:], procs[:1]):
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in group:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        fleet.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    report(args, samples, len(nodes), len(endpoint_ids))
    sizes_report()
    return 0 if samples else 1


SIZED_MODELS = ("GpuSample", "GpuRollup1m", "GpuRollup1h", "SiteGpuRollup1m", "CounterSnapshot", "UsageDelta",
                "UsageRollup", "EngineSeries")


def table_sizes() -> list[tuple[str, str, int, int]]:
    """(model, table, rows, bytes incl. indexes and TOAST; a partitioned table summed over its partitions)."""
    from django.apps import apps
    from django.db import connection

    out = []
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # settle visibility maps and free space before measuring
        for name in SIZED_MODELS:
            table = apps.get_model("telemetry", name)._meta.db_table
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - a model's table name
            rows = cursor.fetchone()[0]
            # A partitioned parent has no storage of its own: sum its partitions; a plain table is its own size.
            cursor.execute("SELECT greatest(pg_total_relation_size(%s::regclass), (SELECT coalesce(sum("
                           "pg_total_relation_size(relid)), 0) FROM pg_partition_tree(%s::regclass)))",
                           [table, table])
            out.append((name, table, rows, int(cursor.fetchone()[0])))
    return out


def sizes_report() -> None:
    print("Storage per row, measured on the tables this run filled (`pg_total_relation_size` incl. indexes "
          "and TOAST ÷ rows; PostgreSQL 15, after `VACUUM ANALYZE`; tables with few rows are dominated by fixed "
          "overhead and are marked so):")
    print()
    print("| table | rows | total size | bytes / row |")
    print("|---|---|---|---|")
    for name, table, rows, size in table_sizes():
        per_row = f"{size / rows:,.0f}" if rows >= 1000 else ("–" if rows == 0 else f"({size / rows:,.0f}, few rows)")
        print(f"| {name} (`{table}`) | {rows:,} | {size / 2**20:,.1f} MiB | {per_row} |")
    print()


def _median(values: list[float | None]) -> float:
    real = [v for v in values if v is not None]
    return statistics.median(real) if real else float("nan")


def report(args: argparse.Namespace, samples: list[dict], nodes: int, endpoints: int) -> None:
    gpus = nodes * GPUS_PER_NODE
    after_warm = [s for s in samples if s["t"] >= args.warmup + 60] or samples
    rss = [(s["t"], s["scrape_rss_mib"]) for s in after_warm]
    child_max = max((max(s["scrape_child_rss_mib"], default=0) for s in samples), default=0)
    # Sustained = rows over the whole measured window (a scrape batch commits 250 endpoints at once, so single
    # 10 s windows swing between 0 and twice the rate).
    span = samples[-1]["t"] - samples[0]["t"] + args.sample if samples else 1
    first = samples[0]["rows"] if samples else {}
    rate = {k: (samples[-1]["rows"].get(k, 0) - first.get(k, 0) + samples[0]["rate"][k] * args.sample) / span
            for k in samples[0]["rate"]} if samples else {}
    cpu = {k: _median([s["cpu_share"][k] for s in samples]) for k in samples[0]["cpu_share"]} if samples else {}
    offered_gpu = gpus / args.gpu_interval
    offered_scrape = endpoints / args.scrape_interval
    print("## Load generator: the pipeline at fleet scale (`bench/loadgen.py`)")
    print()
    print(f"{gpus:,} simulated GPUs ({nodes:,} nodes × {GPUS_PER_NODE}, one report per node every "
          f"{args.gpu_interval:.0f} s through `gpu_report_ingest_task` on queue `ingest`) and {endpoints:,} simulated "
          f"engine endpoints (bench/fleet.py, {args.fleet_processes} processes) scraped every "
          f"{args.scrape_interval:.0f} s by `endpoints_scrape_schedule` → `endpoints_scrape_task` (batches of 250, "
          f"queue `scrape`); rollups every minute on `rollup`. Real Redis broker and Celery workers "
          f"(scrape ×{args.scrape_concurrency}, ingest ×{args.ingest_concurrency}, rollup ×1). "
          f"{args.duration:.0f} s measured after a {args.warmup:.0f} s warm-up, sampled every {args.sample:.0f} s; "
          "rates are over the whole window, the rest medians (and maxima) over the samples.")
    print()
    print("| measure | offered | sustained (whole window) / median |")
    print("|---|---|---|")
    print(f"| GPU samples written / s | {offered_gpu:,.0f} | {rate.get('gpu', float('nan')):,.0f} |")
    print(f"| endpoint scrapes recorded / s | {offered_scrape:,.0f} | {rate.get('scrapes', float('nan')):,.0f} |")
    print(f"| counter snapshots / s | – | {rate.get('telemetry_countersnapshot', float('nan')):,.0f} |")
    print(f"| usage deltas / s | – | {rate.get('telemetry_usagedelta', float('nan')):,.0f} |")
    depth = {q: [s["depth"][q] for s in samples] for q in ("scrape", "ingest", "rollup")}
    print("| queue depth (median, max) | – | "
          + ", ".join(f"{q} {_median(v):.0f} (max {max(v, default=0)})" for q, v in depth.items()) + " |")
    gpu_lag = [s["gpu_lag_s"] for s in samples if s["gpu_lag_s"] is not None]
    print("| GPU lag: now − newest sample (median, max) | – | "
          + (f"{_median(gpu_lag):.1f} s (max {max(gpu_lag):.1f} s) |" if gpu_lag else "– (no GPUs) |"))
    print(f"| scrape lag: now − oldest endpoint's last scrape (median, max; interval {args.scrape_interval:.0f} s)"
          f" | – | {_median([s['scrape_lag_s'] for s in samples]):.1f} s "
          f"(max {max((s['scrape_lag_s'] or 0) for s in samples):.1f} s) |")
    print(f"| unhealthy endpoints (max) | 0 | {max((s['unhealthy'] for s in samples), default=0)} |")
    print(f"| scrape worker RSS, all processes: first → last sample after the first minute | – | "
          f"{rss[0][1]:.1f} → {rss[-1][1]:.1f} MiB (largest child {child_max:.1f} MiB) |")
    span_s = rss[-1][0] - rss[0][0] if rss else 0.0
    # Over a few minutes a slope is noise scaled up to an hour (1 MiB in 40 s reads +90 MiB/h): it is printed only
    # from a 10-minute window on; docs/scaling.md has the one-hour soak.
    slope = (f"{slope_per_hour(rss):+.1f} MiB/h" if span_s >= 600 else
             f"window of {span_s:.0f} s too short for a slope (one-hour soak: docs/scaling.md)")
    print(f"| scrape worker RSS slope (least squares, {len(rss)} samples) | flat | {slope} |")
    print("| CPU, cores (median): " + ", ".join(cpu) + " | – | "
          + ", ".join(f"{v:.2f}" for v in cpu.values()) + " |")
    print()


if __name__ == "__main__":
    sys.exit(main())
