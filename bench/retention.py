"""Retention benchmark: dropping a day of raw GPU samples by dropping its partition (the project's
`gpu_sample_retention_apply`) next to `DELETE ... WHERE ts < cutoff` of the same rows from an unpartitioned copy
of the table (same columns, PK (gpu_id, ts), BRIN on ts), in the same run.

    scripts/with_postgres.sh .venv/bin/python bench/retention.py [--gpus 500] [--runs 3]

Each run loads two days of 1-minute samples into both tables with server-side COPY (not timed), then times
the removal of the older day on each side.
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

PLAIN = "bench_gpusample_plain"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=100)
    parser.add_argument("--interval", type=int, default=10, help="seconds between samples (the default poll)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    setup_django()

    from django.db import connection
    from django.test.utils import override_settings

    from telemetry.collectors.nvml import GpuReading
    from telemetry.ingest import SAMPLE_COLUMNS, TABLE, copy_text, sample_row
    from telemetry.retention import forget_known_partitions, gpu_sample_partitions_ensure, gpu_sample_retention_apply
    from tests import factories

    node = factories.NodeFactory(hostname=f"bench-retention-{os.getpid()}")
    gpu_ids = [factories.GpuFactory(node=node, index=i % 8).pk for i in range(args.gpus)]
    day0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    per_day = 86400 // args.interval
    # The whole old day, and the first hour of the next (what DELETE has to step over is the index, not the rows).
    steps = per_day + 3600 // args.interval
    copy_file = Path(os.environ.get("PG_TEST_DIR") or tempfile.mkdtemp()) / "retention.copy"
    with copy_file.open("w") as fh:
        for step in range(steps):
            ts = day0 + dt.timedelta(seconds=step * args.interval)
            fh.write(copy_text(
                sample_row(gpu_id=g, reading=GpuReading(uuid="x", index=0, ts=ts, util_pct=60, power_w=420.0,
                                                        energy_mj=step * 4_200_000, temperature_c=61), source="nvml")
                for g in gpu_ids))
    copy_file.chmod(0o644)
    rows_per_day = args.gpus * per_day
    columns = ", ".join(SAMPLE_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {PLAIN}")
        cursor.execute(f"CREATE TABLE {PLAIN} (LIKE {TABLE} INCLUDING DEFAULTS)")
        cursor.execute(f"ALTER TABLE {PLAIN} ADD PRIMARY KEY (gpu_id, ts)")
        cursor.execute(f"CREATE INDEX {PLAIN}_ts_brin ON {PLAIN} USING brin (ts)")

    drop_s, delete_s = [], []
    # "now" such that day 0 is past retention and day 1 is not.
    now = day0 + dt.timedelta(days=1 + 7, hours=12)
    for run in range(args.runs):
        forget_known_partitions()
        gpu_sample_partitions_ensure(days=[day0.date(), (day0 + dt.timedelta(days=1)).date()])
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {TABLE}")
            cursor.execute(f"TRUNCATE {PLAIN}")
            cursor.execute(f"COPY {TABLE} ({columns}) FROM '{copy_file}'")
            cursor.execute(f"COPY {PLAIN} ({columns}) FROM '{copy_file}'")
            cursor.execute(f"VACUUM ANALYZE {PLAIN}")
        with override_settings(RAW_SAMPLE_RETENTION_DAYS=7):
            began = time.perf_counter()
            result = gpu_sample_retention_apply(now=now)
            drop_s.append(time.perf_counter() - began)
        assert result["partitions_dropped"] == 1, result
        with connection.cursor() as cursor:
            began = time.perf_counter()
            cursor.execute(f"DELETE FROM {PLAIN} WHERE ts < %s", [day0 + dt.timedelta(days=1)])
            delete_s.append(time.perf_counter() - began)
            deleted = cursor.rowcount
            cursor.execute(f"SELECT count(*) FROM {TABLE}")
            kept = cursor.fetchone()[0]
        assert deleted == rows_per_day and kept == (steps - per_day) * args.gpus, (deleted, kept)
        print(f"run {run + 1}: drop partition {drop_s[-1] * 1000:.1f} ms, DELETE {delete_s[-1] * 1000:.0f} ms",
              file=sys.stderr)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {PLAIN}")
    copy_file.unlink(missing_ok=True)
    drop, delete = statistics.median(drop_s), statistics.median(delete_s)
    print(f"""## Retention (`bench/retention.py`)

Removing one day of raw GPU samples ({rows_per_day:,} rows: {args.gpus:,} GPUs × {per_day:,} samples, one every
{args.interval} s) from a table that also holds the next day's first hour: the project's retention
(`gpu_sample_retention_apply`, drops the day's partition) next to `DELETE ... WHERE ts < cutoff` on an
unpartitioned table with the same rows, PK and BRIN index; median of {args.runs} runs.

| measure | median | peer (DELETE) | speed-up (target ≥ 20×) |
|---|---|---|---|
| drop one day | {drop * 1000:.1f} ms | {delete * 1000:,.0f} ms | {delete / drop:,.0f}× |
""")


if __name__ == "__main__":
    main()
