"""GPU ingest benchmark: 1M readings into PostgreSQL through the project's ingest path, next to a
server-side `COPY` of the same rows into the same (partitioned) table, in the same run.

    scripts/with_postgres.sh .venv/bin/python bench/gpu_ingest.py [--rows 1000000] [--runs 3]

Timed: for the ingest path, `sample_row()` (GpuReading → row) + `gpu_samples_write()` per batch of
`--batch` readings (building the GpuReading objects themselves is not timed: the collector did that);
for server-side COPY, the `COPY ... FROM '<file>'` statement only. The table is truncated before each
measurement; the day partitions exist throughout. Also measured, once: a replayed batch (the
de-duplicating staging path), `bulk_create` (the SQLite path) on 20k rows, and whole node reports
(8 GPUs each) through `gpu_report_ingest` one at a time and through `gpu_reports_ingest` in batches
(payload decoding included, the Celery message itself not).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import setup_django  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--gpus", type=int, default=1000)
    parser.add_argument("--batch-nodes", type=int, default=200, help="nodes of 8 GPUs in the batched-path test")
    parser.add_argument("--batch-reports", type=int, default=100, help="reports per batch (GPU_INGEST_BATCH_MAX)")
    args = parser.parse_args()

    setup_django()
    from django.db import connection

    from sites.models import Gpu, Node, Partner, Site
    from telemetry.collectors.nvml import GpuReading, NodeReading, reading_to_dict
    from telemetry.gpu_services import QueuedReport, gpu_report_ingest, gpu_reports_ingest
    from telemetry.ingest import (
        SAMPLE_COLUMNS,
        TABLE,
        copy_text,
        gpu_samples_write,
        gpu_samples_write_bulk_create,
        sample_row,
    )
    from telemetry.retention import gpu_sample_partitions_ensure

    partner, _ = Partner.objects.get_or_create(name="Bench", slug="bench")
    site, _ = Site.objects.get_or_create(
        partner=partner, name="Bench site", slug="bench-site",
        defaults=dict(country="NO", city="Oslo", contract_date=dt.date(2026, 1, 1), power_capacity_kw=1000,
                      electricity_price_per_kwh="0.08", capex_per_gpu="30000"))
    node, _ = Node.objects.get_or_create(site=site, hostname="bench-node-000")
    existing = Gpu.objects.filter(node=node).count()
    Gpu.objects.bulk_create([Gpu(node=node, uuid=f"GPU-bench-{i:06d}", index=i % 8, name="NVIDIA H100 80GB HBM3")
                             for i in range(existing, args.gpus)])
    gpu_ids = list(Gpu.objects.filter(node=node).order_by("pk").values_list("pk", flat=True))[: args.gpus]

    t0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    steps = args.rows // len(gpu_ids)
    absent = (("retired_pages_pending", "NVMLError_NotSupported: Not Supported"),)

    def readings(step_from: int, step_to: int) -> list[tuple[int, GpuReading]]:
        out = []
        for step in range(step_from, step_to):
            ts = t0 + dt.timedelta(seconds=10 * step)
            for n, gpu_id in enumerate(gpu_ids):
                out.append((gpu_id, GpuReading(
                    uuid=f"GPU-bench-{n:06d}", index=n % 8, ts=ts, util_pct=(step + n) % 101, memory_util_pct=40,
                    memory_used_bytes=40_000_000_000 + step, memory_total_bytes=85520809984,
                    power_w=350.0 + (step * 7 + n) % 350 + 0.125, energy_mj=1_000_000_000 + step * 4_000_000 + n,
                    temperature_c=55, sm_clock_mhz=1980, mem_clock_mhz=2619, throttle_reasons=0,
                    ecc_uncorrected_errors=0, remapped_rows_uncorrectable=0, unsupported=absent)))
        return out

    steps_per_batch = max(1, args.batch // len(gpu_ids))
    gpu_sample_partitions_ensure(days={(t0 + dt.timedelta(seconds=10 * s)).date() for s in (0, steps - 1)})

    def truncate() -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {TABLE}")

    def run_ingest() -> float:
        truncate()
        elapsed = 0.0
        for start in range(0, steps, steps_per_batch):
            batch = readings(start, min(steps, start + steps_per_batch))
            began = time.perf_counter()
            gpu_samples_write(rows=[sample_row(gpu_id=g, reading=r, source="nvml") for g, r in batch])
            elapsed += time.perf_counter() - began
        return elapsed

    # The COPY file: the same rows, written where the server (another OS user) can read it.
    copy_dir = Path(os.environ.get("PG_TEST_DIR") or tempfile.mkdtemp())
    copy_file = copy_dir / "gpu_samples.copy"
    with copy_file.open("w") as fh:
        for start in range(0, steps, steps_per_batch):
            batch = readings(start, min(steps, start + steps_per_batch))
            fh.write(copy_text(sample_row(gpu_id=g, reading=r, source="nvml") for g, r in batch))
    copy_file.chmod(0o644)
    total_rows = steps * len(gpu_ids)

    def run_server_copy() -> float:
        truncate()
        with connection.cursor() as cursor:
            began = time.perf_counter()
            cursor.execute(f"COPY {TABLE} ({', '.join(SAMPLE_COLUMNS)}) FROM '{copy_file}'")
            return time.perf_counter() - began

    ingest_rates, copy_rates = [], []
    for run in range(args.runs):
        # Alternate the order so neither side always runs on a warmer cache.
        pair = (run_ingest, run_server_copy) if run % 2 == 0 else (run_server_copy, run_ingest)
        for fn in pair:
            seconds = fn()
            (ingest_rates if fn is run_ingest else copy_rates).append(total_rows / seconds)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {TABLE}")
            assert cursor.fetchone()[0] == total_rows
        print(f"run {run + 1}: ingest path {ingest_rates[-1]:,.0f} rows/s, "
              f"server-side COPY {copy_rates[-1]:,.0f} rows/s, ratio {ingest_rates[-1] / copy_rates[-1]:.0%}",
              file=sys.stderr)

    # A replayed batch goes through the staging table + ON CONFLICT DO NOTHING.
    batch = readings(0, steps_per_batch)
    rows = [sample_row(gpu_id=g, reading=r, source="nvml") for g, r in batch]
    began = time.perf_counter()
    written = gpu_samples_write(rows=rows)
    replay_rate = len(rows) / (time.perf_counter() - began)
    assert written == 0

    # bulk_create (the SQLite path) on 20k fresh rows.
    truncate()
    bc_rows = [sample_row(gpu_id=g, reading=r, source="nvml") for g, r in readings(0, max(1, 20_000 // len(gpu_ids)))]
    began = time.perf_counter()
    gpu_samples_write_bulk_create(rows=bc_rows)
    bulk_rate = len(bc_rows) / (time.perf_counter() - began)

    # Whole node reports through the service (inventory sync + write), 8 GPUs per report.
    truncate()
    Gpu.objects.filter(node=node, index__gte=0).exclude(pk__in=gpu_ids[:8]).update(status="lost")
    uuids8 = list(Gpu.objects.filter(pk__in=gpu_ids[:8]).order_by("pk").values_list("uuid", flat=True))
    now = dt.datetime.now(dt.UTC)
    reports = 500
    began = time.perf_counter()
    for i in range(reports):
        ts = now - dt.timedelta(seconds=10 * (reports - i))
        gpus = tuple(GpuReading(uuid=u, index=k, ts=ts, util_pct=50, power_w=400.0, energy_mj=1_000_000 + i * 4000)
                     for k, u in enumerate(uuids8))
        gpu_report_ingest(node_id=node.pk, report=NodeReading(hostname=node.hostname, ts=ts, gpus=gpus))
    report_rate = reports / (time.perf_counter() - began)

    # The same through the batched path the ingest task uses: queued payloads (JSON-decoded dicts, as the
    # broker delivers them) of `--batch-nodes` nodes × 8 GPUs, `--batch-reports` per transaction.
    truncate()
    batch_nodes = []
    for n in range(args.batch_nodes):
        bnode, _ = Node.objects.get_or_create(site=site, hostname=f"bench-batch-{n:04d}")
        batch_nodes.append(bnode)
        Gpu.objects.bulk_create([Gpu(node=bnode, uuid=f"GPU-bench-b{n:04d}-{k}", index=k, name="NVIDIA H100 80GB HBM3")
                                 for k in range(8)], ignore_conflicts=True)
    cycles = max(1, 4000 // args.batch_nodes)

    def queued(cycle: int) -> list[QueuedReport]:
        ts = now - dt.timedelta(seconds=10 * (cycles + 1 - cycle))
        return [QueuedReport(node_id=bnode.pk, payload=reading_to_dict(NodeReading(
            hostname=bnode.hostname, ts=ts, gpus=tuple(
                GpuReading(uuid=f"GPU-bench-b{n:04d}-{k}", index=k, ts=ts, name="NVIDIA H100 80GB HBM3", util_pct=50,
                           power_w=400.0, energy_mj=1_000_000 + cycle * 4000, temperature_c=55, unsupported=absent)
                for k in range(8)))))
            for n, bnode in enumerate(batch_nodes)]

    gpu_reports_ingest(reports=queued(0))  # the first report of each node creates its GPUs' inventory row
    pending = [q for cycle in range(1, cycles + 1) for q in queued(cycle)]
    began = time.perf_counter()
    for start in range(0, len(pending), args.batch_reports):
        result = gpu_reports_ingest(reports=pending[start:start + args.batch_reports])
        assert not result.refused and result.synced_one_by_one == 0, result
    batch_rate = len(pending) / (time.perf_counter() - began)

    ingest, server = statistics.median(ingest_rates), statistics.median(copy_rates)
    ratios = [i / c for i, c in zip(ingest_rates, copy_rates, strict=True)]
    per_run = ", ".join(f"{r:.0%}" for r in ratios)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    one_line = (f"| `gpu_report_ingest`, whole 8-GPU node reports one at a time (push API; inventory sync + write) "
                f"| {report_rate:,.0f} reports/s | | |")
    batch_line = (f"| `gpu_reports_ingest`, 8-GPU reports of {args.batch_nodes} nodes as queued payloads, "
                  f"{args.batch_reports} per batch (the ingest task's path) | {batch_rate:,.0f} reports/s = "
                  f"{batch_rate * 8:,.0f} readings/s | | {batch_rate / report_rate:.1f}× one at a time |")
    # One markdown section (bench/run_all.py collects it into docs/benchmarks.md).
    print(f"""## GPU ingest (`bench/gpu_ingest.py`)

{total_rows:,} GPU readings ({len(gpu_ids):,} GPUs, 16 columns) into the day-partitioned `telemetry_gpusample`
(PK (gpu_id, ts) + BRIN on ts) on PostgreSQL {pg_version}, batches of {steps_per_batch * len(gpu_ids):,}; the
project's ingest path (`sample_row` + `gpu_samples_write`: COPY on Django's connection) next to a server-side
`COPY ... FROM '<file>'` of the same rows into the same table, truncated before each; median of {args.runs} runs.

| measure | median | peer | ratio (target) |
|---|---|---|---|
| ingest path vs server-side COPY | {ingest:,.0f} rows/s | {server:,.0f} rows/s | {ingest / server:.0%} (≥ 50%) |
| replayed batch (staging + ON CONFLICT DO NOTHING) | {replay_rate:,.0f} rows/s | | stores 0 rows |
| `bulk_create(ignore_conflicts)` (SQLite path, on PostgreSQL), 20k rows | {bulk_rate:,.0f} rows/s | | |
{one_line}
{batch_line}

Per-run ratios of ingest path to server-side COPY: {per_run}.
""")
    copy_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
