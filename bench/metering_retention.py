"""Counter snapshot retention: the project's `counter_snapshots_prune` (detach + drop the day partition of
`telemetry_countersnapshot`) next to the retention it replaced — a batched DELETE of the day's rows that keeps each
series' latest snapshot — run on an unpartitioned table shaped as the old one (id primary key, unique
(series_id, scraped_at), index on series_id), in the same run, on the same rows.

    scripts/with_postgres.sh .venv/bin/python bench/metering_retention.py [--series 100] [--runs 3]

Rows are generated server-side (every counter filled, one snapshot per series every 15 s, the default scrape
interval) for one day plus the next day's first hour, not timed. Each run builds both sides afresh (filled, indexed,
vacuumed, then a CHECKPOINT: a week-old day has long been checkpointed) and times each removal to its commit. The
next days' partitions, which the same hourly task makes ahead, exist before the timing on the partitioned side.
Runs on the test cluster of scripts/with_postgres.sh (its durability settings are printed with the figures;
`bench/retention.py` measures drop vs DELETE under PostgreSQL's defaults too).
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
PLAIN = "bench_countersnapshot_plain"
ROWS = (
    "SELECT s.id, %(start)s + n * interval '{interval} seconds', 1.7e9, n::bigint * 900, n::bigint * 300, n, 0, "
    "'{{\"stop\": 10, \"length\": 2}}'::jsonb, n * 0.05, n, n * 0.9, n::bigint * 290, 3, 1, 0.42 "
    "FROM unnest(%(series)s::bigint[]) s(id), generate_series(%(first)s, %(last)s) n"
)
COLUMNS = ("series_id, scraped_at, process_start_time_s, prompt_tokens, generation_tokens, requests_ok, "
           "requests_failed, requests_by_reason, ttft_sum_s, ttft_count, itl_sum_s, itl_count, running, waiting, "
           "kv_cache_usage")
# The retention this replaced (counter_snapshots_prune before day partitions), as its ORM statements ran:
# pick up to 50,000 ids of rows past the cutoff that have a newer snapshot of their series, delete them with the
# check repeated, until none is left; each statement its own transaction (the same SQL, captured from the ORM).
NEWER = f"EXISTS (SELECT 1 FROM {PLAIN} n WHERE n.series_id = c.series_id AND n.scraped_at > c.scraped_at)"
OLD_PICK = f"SELECT c.id FROM {PLAIN} c WHERE c.scraped_at < %s AND {NEWER} LIMIT 50000"
# As Django rendered it: the ids as a literal IN list (client-side binding), the check repeated.
OLD_DELETE = f"DELETE FROM {PLAIN} c WHERE c.scraped_at < %s AND {NEWER} AND c.id IN ({{ids}})"


def old_prune(cursor, cutoff: dt.datetime) -> int:
    deleted = 0
    while True:
        cursor.execute(OLD_PICK, [cutoff])
        ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return deleted
        cursor.execute(OLD_DELETE.format(ids=", ".join(str(int(pk)) for pk in ids)), [cutoff])
        deleted += cursor.rowcount


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
    from telemetry.retention import COUNTER_SNAPSHOTS
    from tests import factories

    with connection.cursor() as cursor:
        durability = []
        for name in ("fsync", "synchronous_commit", "full_page_writes"):
            cursor.execute(f"SHOW {name}")
            durability.append(f"`{name}={cursor.fetchone()[0]}`")
    endpoint = factories.ServingEndpointFactory()
    EngineSeries.objects.bulk_create([EngineSeries(endpoint=endpoint, key=f"bench-{i}", model="m", first_seen_at=DAY0,
                                                   last_seen_at=DAY0) for i in range(args.series)])
    series = list(EngineSeries.objects.filter(endpoint=endpoint).values_list("pk", flat=True))
    table = CounterSnapshot._meta.db_table
    per_day = 86400 // args.interval
    hour_rows = 3600 // args.interval
    rows = ROWS.format(interval=args.interval)
    now = DAY0 + dt.timedelta(days=1 + 7)  # day 0 is past the 7-day retention, day 1 is not
    cutoff = now - dt.timedelta(days=7)

    drop_s, old_s = [], []
    day_bytes = plain_bytes = 0
    started = time.perf_counter()
    for run in range(args.runs):
        COUNTER_SNAPSHOTS.forget()
        # Day 0, day 1 (its first hour stays), and the days the hourly task makes ahead of `now`.
        days = [DAY0.date(), DAY0.date() + dt.timedelta(days=1)]
        COUNTER_SNAPSHOTS.ensure(days=days + [now.date() + dt.timedelta(days=n) for n in range(-1, 4)])
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {table}")
            cursor.execute(f"INSERT INTO {table} ({COLUMNS}) {rows}",
                           {"start": DAY0, "series": series, "first": 0, "last": per_day + hour_rows - 1})
            cursor.execute(f"DROP TABLE IF EXISTS {PLAIN}")
            cursor.execute(f"CREATE TABLE {PLAIN} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
                           f"LIKE {table} INCLUDING DEFAULTS)")
            cursor.execute(f"INSERT INTO {PLAIN} ({COLUMNS}) {rows}",
                           {"start": DAY0, "series": series, "first": 0, "last": per_day + hour_rows - 1})
            cursor.execute(f"ALTER TABLE {PLAIN} ADD CONSTRAINT {PLAIN}_unique UNIQUE (series_id, scraped_at)")
            cursor.execute(f"CREATE INDEX {PLAIN}_series ON {PLAIN} (series_id)")
            cursor.execute(f"VACUUM ANALYZE {table}")
            cursor.execute(f"VACUUM ANALYZE {PLAIN}")
            cursor.execute("SELECT pg_total_relation_size(%s::regclass)", [COUNTER_SNAPSHOTS.name(DAY0.date())])
            day_bytes = cursor.fetchone()[0]
            cursor.execute(f"SELECT pg_total_relation_size('{PLAIN}')")
            plain_bytes = cursor.fetchone()[0]
            cursor.execute("CHECKPOINT")
        with override_settings(RAW_SAMPLE_RETENTION_DAYS=7):
            began = time.perf_counter()
            result = counter_snapshots_prune(now=now)
            drop_s.append(time.perf_counter() - began)
        assert result["partitions_dropped"] == 1 and result["partitions_created"] == 0, result
        with connection.cursor() as cursor:
            began = time.perf_counter()
            deleted = old_prune(cursor, cutoff)
            old_s.append(time.perf_counter() - began)
            cursor.execute(f"SELECT count(*) FROM {table}")
            kept = cursor.fetchone()[0]
            cursor.execute(f"SELECT count(*) FROM {PLAIN}")
            plain_kept = cursor.fetchone()[0]
        assert deleted == args.series * per_day and kept == plain_kept == args.series * hour_rows, (deleted, kept)
        print(f"run {run + 1}: partition drop {drop_s[-1] * 1000:.1f} ms, old DELETE {old_s[-1] * 1000:,.0f} ms; at "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {PLAIN}")
    drop, old = statistics.median(drop_s), statistics.median(old_s)
    day_rows = args.series * per_day
    ratios = ", ".join(f"{o / d:,.0f}×" for o, d in zip(old_s, drop_s, strict=True))
    # docs/scaling.md: ≈ 1,700 scrapes/s at 100,000 GPUs, one snapshot per raw series per scrape.
    fleet_rows = 1_700 * 86_400
    row_day = (f"| remove one day | {drop * 1000:,.1f} ms | {old * 1000:,.0f} ms ({old / day_rows * 1e6:.1f} µs per "
               f"row) | {old / drop:,.0f}× ({ratios}) |")
    row_fleet = (f"| the same at 100,000 GPUs ({fleet_rows / 1e6:,.0f} M snapshots a day per series per endpoint) "
                 f"| a drop of one day's partition | {fleet_rows * old / day_rows / 60:,.0f} min of DELETE a day | |")
    print(f"""## Counter snapshot retention (`bench/metering_retention.py`)

One day of counter snapshots ({args.series:,} series × {per_day:,}, one every {args.interval} s: {day_rows:,} rows;
the day partition {day_bytes / 2**20:,.0f} MiB with its primary key) removed from a table that also holds the next
day's first hour: the project's `counter_snapshots_prune` (DETACH + DROP of the day partition; each series' last
counters live on the series, so nothing has to be kept) next to the retention it replaced (batched DELETE of 50,000
ids keeping each series' latest snapshot) on an unpartitioned table of the old shape ({plain_bytes / 2**20:,.0f} MiB
with its three indexes); both timed to commit, median of {args.runs} runs, on the test cluster
({", ".join(durability)}).

| measure | partition drop (now) | old DELETE | old ÷ now (per run) |
|---|---|---|---|
{row_day}
{row_fleet}

_Took {time.perf_counter() - started:.0f} s._
""")


if __name__ == "__main__":
    main()
