"""What retention of counter snapshots costs, to decide whether `CounterSnapshot` needs day partitions yet:
the project's `counter_snapshots_prune` (batched DELETE keeping each series' latest snapshot) removing one day of
snapshots, next to dropping a table holding the same rows (what a day partition would cost), in the same run.

    scripts/with_postgres.sh .venv/bin/python bench/metering_retention.py [--series 100] [--runs 3]

Rows are generated server-side (every counter filled, one snapshot per series every 15 s, the default scrape
interval) for one day plus the next day's first hour, not timed. Each run refills and times both removals.
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

DAY0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
COPY = "bench_countersnapshot_day"
ROWS = (
    "SELECT s.id, %(start)s + n * interval '{interval} seconds', 1.7e9, n::bigint * 900, n::bigint * 300, n, 0, "
    "'{{\"stop\": 10, \"length\": 2}}'::jsonb, n * 0.05, n, n * 0.9, n::bigint * 290, 3, 1, 0.42 "
    "FROM unnest(%(series)s::bigint[]) s(id), generate_series(%(first)s, %(last)s) n"
)
COLUMNS = ("series_id, scraped_at, process_start_time_s, prompt_tokens, generation_tokens, requests_ok, "
           "requests_failed, requests_by_reason, ttft_sum_s, ttft_count, itl_sum_s, itl_count, running, waiting, "
           "kv_cache_usage")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--interval", type=int, default=15)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    setup_django()

    from django.db import connection
    from django.test.utils import override_settings

    from telemetry.metering_services import counter_snapshots_prune
    from telemetry.models import CounterSnapshot, EngineSeries
    from tests import factories

    endpoint = factories.ServingEndpointFactory()
    EngineSeries.objects.bulk_create([EngineSeries(endpoint=endpoint, key=f"bench-{i}", model="m", first_seen_at=DAY0,
                                                   last_seen_at=DAY0) for i in range(args.series)])
    series = list(EngineSeries.objects.filter(endpoint=endpoint).values_list("pk", flat=True))
    table = CounterSnapshot._meta.db_table
    per_day = 86400 // args.interval
    rows = ROWS.format(interval=args.interval)
    now = DAY0 + dt.timedelta(days=1 + 7)  # day 0 is past the 7-day retention, day 1 is not

    prune_s, drop_s = [], []
    size = 0
    for run in range(args.runs):
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {table}")
            cursor.execute(f"INSERT INTO {table} ({COLUMNS}) {rows}",
                           {"start": DAY0, "series": series, "first": 0, "last": per_day + 3600 // args.interval - 1})
            cursor.execute(f"DROP TABLE IF EXISTS {COPY}")
            cursor.execute(f"CREATE TABLE {COPY} (LIKE {table} INCLUDING ALL)")
            cursor.execute(f"INSERT INTO {COPY} ({COLUMNS}) {rows}",
                           {"start": DAY0, "series": series, "first": 0, "last": per_day - 1})
            cursor.execute(f"VACUUM ANALYZE {table}")
            cursor.execute(f"VACUUM ANALYZE {COPY}")
            cursor.execute("CHECKPOINT")
            cursor.execute(f"SELECT pg_total_relation_size('{COPY}')")
            size = cursor.fetchone()[0]
        with override_settings(RAW_SAMPLE_RETENTION_DAYS=7):
            began = time.perf_counter()
            deleted = counter_snapshots_prune(now=now)
            prune_s.append(time.perf_counter() - began)
        assert deleted == args.series * per_day, deleted
        with connection.cursor() as cursor:
            began = time.perf_counter()
            cursor.execute(f"DROP TABLE {COPY}")
            drop_s.append(time.perf_counter() - began)
        print(f"run {run + 1}: prune {prune_s[-1] * 1000:,.0f} ms, drop {drop_s[-1] * 1000:.1f} ms", file=sys.stderr)
    prune, drop = statistics.median(prune_s), statistics.median(drop_s)
    day_rows = args.series * per_day
    per_row_us = prune / day_rows * 1e6
    # docs/scaling.md: ≈ 1,700 scrapes/s at 100,000 GPUs, one snapshot per raw series per scrape.
    fleet_rows = 1_700 * 86_400
    fleet_line = (f"| the same per row at 100,000 GPUs (≈ 1,700 scrapes/s: {fleet_rows / 1e6:,.0f} M snapshots a day "
                  f"per series per endpoint) | {fleet_rows * per_row_us / 1e6 / 60:,.1f} min of DELETE a day | | |")
    print(f"""## Counter snapshot retention (`bench/metering_retention.py`)

One day of counter snapshots ({args.series:,} series × {per_day:,}, one every {args.interval} s: {day_rows:,} rows,
{size / 2**20:,.0f} MiB with indexes) removed by the project's `counter_snapshots_prune` (DELETE in batches of
50,000, each series' latest snapshot kept), next to `DROP TABLE` of a table holding the same rows and indexes
(what a day partition would cost); median of {args.runs} runs.

| measure | median | peer (drop) | ratio |
|---|---|---|---|
| remove one day | {prune * 1000:,.0f} ms ({per_row_us:.2f} µs per row) | {drop * 1000:.1f} ms | {prune / drop:,.0f}× |
{fleet_line}
""")


if __name__ == "__main__":
    main()
