"""Retention benchmark: removing a day of raw GPU samples by dropping its partition (the project's
`gpu_sample_retention_apply`) next to `DELETE ... WHERE ts < cutoff` of the same rows from an unpartitioned copy
of the table (same columns, PK (gpu_id, ts), BRIN on ts), in the same run, at two sizes of a day.

    scripts/with_postgres.sh .venv/bin/python bench/retention.py [--gpus 100,300] [--runs 3]

A day at the issue's scale (10,000 GPUs every 10 s) is 86.4 M rows, too many to seed here in a benchmark's time;
two smaller days show how each side grows. Rows are generated server-side (`INSERT ... SELECT generate_series`,
every column filled as a real reading fills it), not timed. Each run gets a freshly built day partition (filled,
indexed, attached); the unpartitioned table is filled once per size and each timed DELETE runs in a transaction
that is rolled back, so the same rows serve every run (a DELETE's commit is one status write; the VACUUM a DELETE
leaves behind, and a drop does not, is not counted).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import setup_django  # noqa: E402

PLAIN = "bench_gpusample_plain"
DAY0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
# The columns of telemetry.ingest.SAMPLE_COLUMNS, as an NVML reading of an H100 fills them.
SELECT_ROWS = (
    "SELECT g, %(start)s + s * interval '{interval} seconds', 'nvml', (s + g) %% 101, 40, 40000000000 + s, "
    "350.0 + (s * 7 + g) %% 350 + 0.125, 1000000000 + s::bigint * 4000000 + g, 55, 1980, 2619, 0, 0, NULL, 0, "
    "'{{\"retired_pages_pending\": \"NVMLError_NotSupported: Not Supported\"}}'::jsonb "
    "FROM unnest(%(gpus)s::bigint[]) g, generate_series(%(first)s, %(last)s) s"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", default="100,300", help="GPUs per day, one size per comma-separated value")
    parser.add_argument("--interval", type=int, default=10, help="seconds between samples (the default poll)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    setup_django()

    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext, override_settings

    from telemetry.ingest import SAMPLE_COLUMNS, TABLE
    from telemetry.retention import (
        forget_known_partitions,
        gpu_sample_partitions_ensure,
        gpu_sample_retention_apply,
        partition_name,
    )
    from tests import factories

    sizes = [int(n) for n in args.gpus.split(",")]
    node = factories.NodeFactory(hostname="bench-retention")
    gpu_ids = [factories.GpuFactory(node=node, index=i % 8).pk for i in range(max(sizes))]
    per_day = 86400 // args.interval
    columns = ", ".join(SAMPLE_COLUMNS)
    select = SELECT_ROWS.format(interval=args.interval)
    day0 = partition_name(DAY0.date())
    # "now" such that day 0 is past retention and day 1 is not.
    now = DAY0 + dt.timedelta(days=1 + 7, hours=12)

    def fill(cursor, table: str, gpus: list[int], first: int, last: int) -> None:
        cursor.execute(f"INSERT INTO {table} ({columns}) {select}",
                       {"start": DAY0, "gpus": gpus, "first": first, "last": last})

    def fresh_day0(cursor, gpus: list[int]) -> None:
        """Day 0 as a partition built the fast way (fill, index, attach), the same files as ingest leaves."""
        cursor.execute(f'CREATE TABLE "{day0}" (LIKE {TABLE} INCLUDING DEFAULTS)')
        fill(cursor, f'"{day0}"', gpus, 0, per_day - 1)
        cursor.execute(f'ALTER TABLE "{day0}" ADD PRIMARY KEY (gpu_id, ts)')
        cursor.execute(f'CREATE INDEX ON "{day0}" USING brin (ts)')
        cursor.execute(f'ALTER TABLE {TABLE} ATTACH PARTITION "{day0}" FOR VALUES FROM (%s) TO (%s)',
                       [DAY0, DAY0 + dt.timedelta(days=1)])

    results = []
    started = time.perf_counter()
    for size in sizes:
        gpus = gpu_ids[:size]
        forget_known_partitions()
        gpu_sample_partitions_ensure(days=[(DAY0 + dt.timedelta(days=1)).date()])
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {TABLE}")
            cursor.execute(f'DROP TABLE IF EXISTS "{day0}"')
            # The next day's first hour stays on both sides (what DELETE has to step over is the index).
            fill(cursor, TABLE, gpus, per_day, per_day + 3600 // args.interval - 1)
            cursor.execute(f"DROP TABLE IF EXISTS {PLAIN}")
            cursor.execute(f"CREATE TABLE {PLAIN} (LIKE {TABLE} INCLUDING DEFAULTS)")
            fill(cursor, PLAIN, gpus, 0, per_day + 3600 // args.interval - 1)
            cursor.execute(f"ALTER TABLE {PLAIN} ADD PRIMARY KEY (gpu_id, ts)")
            cursor.execute(f"CREATE INDEX {PLAIN}_ts_brin ON {PLAIN} USING brin (ts)")
            cursor.execute(f"VACUUM ANALYZE {PLAIN}")
            cursor.execute(f"SELECT pg_total_relation_size('{PLAIN}')")
            plain_bytes = cursor.fetchone()[0]
        print(f"{size} GPUs: unpartitioned copy filled at {time.perf_counter() - started:.0f} s", file=sys.stderr)
        drop_s, detach_s, delete_s = [], [], []
        day_bytes = 0
        for run in range(args.runs):
            with connection.cursor() as cursor:
                fresh_day0(cursor, gpus)
                cursor.execute(f"SELECT pg_total_relation_size('\"{day0}\"')")
                day_bytes = cursor.fetchone()[0]
            with connection.cursor() as cursor:
                cursor.execute("CHECKPOINT")  # a week-old day has long been checkpointed, on both sides
            with override_settings(RAW_SAMPLE_RETENTION_DAYS=7), CaptureQueriesContext(connection) as queries:
                began = time.perf_counter()
                result = gpu_sample_retention_apply(now=now)
                drop_s.append(time.perf_counter() - began)
            assert result["partitions_dropped"] == 1, result
            detach_s.append(sum(float(q["time"]) for q in queries.captured_queries if "DETACH" in q["sql"]))
            with transaction.atomic(), connection.cursor() as cursor:
                began = time.perf_counter()
                cursor.execute(f"DELETE FROM {PLAIN} WHERE ts < %s", [DAY0 + dt.timedelta(days=1)])
                delete_s.append(time.perf_counter() - began)
                deleted = cursor.rowcount
                transaction.set_rollback(True)
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(*) FROM {TABLE}")
                kept = cursor.fetchone()[0]
            assert deleted == size * per_day and kept == size * 3600 // args.interval, (deleted, kept)
            print(f"{size} GPUs, run {run + 1}: retention {drop_s[-1] * 1000:.1f} ms (DETACH "
                  f"{detach_s[-1] * 1000:.1f} ms), DELETE {delete_s[-1] * 1000:.0f} ms; at "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
        results.append((size, day_bytes, plain_bytes, statistics.median(drop_s), statistics.median(detach_s),
                        statistics.median(delete_s), [d / r for d, r in zip(delete_s, drop_s, strict=True)]))
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {PLAIN}")

    lines = []
    for size, day_bytes, _plain, drop, detach, delete, ratios in results:
        lines.append(f"| {size:,} GPUs: {size * per_day:,} rows, {day_bytes / 2**20:,.0f} MiB | {drop * 1000:.1f} ms "
                     f"| {detach * 1000:.1f} ms | {delete * 1000:,.0f} ms | {delete / drop:,.0f}× "
                     f"({', '.join(f'{r:.0f}×' for r in ratios)}) |")
    table = "\n".join(lines)
    print(f"""## Retention (`bench/retention.py`)

Removing one day of raw GPU samples (one sample every {args.interval} s per GPU, every column filled as a reading
fills it) from a table that also holds the next day's first hour, at {len(sizes)} sizes of a day: the project's
retention (`gpu_sample_retention_apply`: DETACH the day's partition, then DROP it; 1-minute rollup retention
included) next to `DELETE ... WHERE ts < cutoff` on an unpartitioned table with the same rows, PK and BRIN index
(timed as a statement, rolled back so the same rows serve every run; the VACUUM a DELETE leaves behind is not
counted; the throwaway cluster runs with `full_page_writes=off`, which spares the DELETE the page images production
would write to the WAL); median of {args.runs} runs per size.
"Parent locked" is the DETACH statement: the only time the partitioned table that ingest and the dashboards
use is locked; the DROP after it locks only the detached table.

| day | retention (detach + drop) | of which parent locked | DELETE | speed-up (target ≥ 20×; per run) |
|---|---|---|---|---|
{table}
""")


if __name__ == "__main__":
    main()
