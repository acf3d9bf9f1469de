"""The migration that partitions `telemetry_countersnapshot` by day, run on a database that already holds snapshots:
every row is copied into its day partition, each series gets its newest snapshot's counters as its last counters,
and the next scrape diffs against them. A private cluster (the suite's database is migrated already), migrated to
the step before with `manage.py migrate`, filled with raw SQL in the old shape, then migrated forward."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

from tests.reliability.private_pg import PrivatePostgres
from tests.reliability.procs import ROOT

BEFORE = "0006_dashboards_warm"
T0 = dt.datetime(2026, 2, 27, 23, 59, 50, tzinfo=dt.UTC)


def _migrate(url: str, *target: str) -> None:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "factory_portal.settings"}
    out = subprocess.run([sys.executable, "manage.py", "migrate", *target, "-v0"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]


def test_the_partitioning_migration_copies_every_snapshot_and_fills_the_last_counters() -> None:
    pg = PrivatePostgres()
    try:
        # given a database at the step before, with two series (one with snapshots over three days, one with
        # none); foreign keys to the inventory are not what is under test, so triggers are off for the fill
        pg.start()
        _migrate(pg.url, "telemetry", BEFORE)
        with pg.connect() as conn:
            conn.execute("SET session_replication_role = replica")
            for pk in (1, 2):
                conn.execute(
                    "INSERT INTO telemetry_engineseries (id, endpoint_id, key, model, labels, split_labels, "
                    "first_seen_at, last_seen_at, created_at, updated_at) "
                    "VALUES (%s, 1, %s, 'm', '{}', '{}', %s, %s, %s, %s)", (pk, f"k{pk}", T0, T0, T0, T0))
            for n in range(4):  # 23:59:50, 00:00:05 the next day, ..., the last one two days later
                at = T0 + dt.timedelta(seconds=15 * n) + (dt.timedelta(days=2) if n == 3 else dt.timedelta())
                conn.execute(
                    "INSERT INTO telemetry_countersnapshot (series_id, scraped_at, process_start_time_s, "
                    "prompt_tokens, generation_tokens, requests_by_reason, running) "
                    "VALUES (1, %s, 1.7e9, %s, %s, %s, 2)", (at, 100 * (n + 1), 7 * n, f'{{"stop": {n}}}'))

        # when the database is migrated forward (to the latest migration)
        _migrate(pg.url)

        # then the table is partitioned by day, every row was copied into its day, and series 1 carries its
        # newest snapshot's counters while series 2 has none
        with pg.connect() as conn:
            assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'telemetry_countersnapshot'"
                                ).fetchone()[0] == "p"
            per_day = conn.execute(
                "SELECT tableoid::regclass::text, count(*), sum(prompt_tokens) FROM telemetry_countersnapshot "
                "GROUP BY 1 ORDER BY 1").fetchall()
            last = conn.execute(
                "SELECT id, last_scraped_at, last_prompt_tokens, last_generation_tokens, last_process_start_time_s, "
                "last_requests_by_reason FROM telemetry_engineseries ORDER BY id").fetchall()
        assert per_day == [("telemetry_countersnapshot_p20260227", 1, 100),
                           ("telemetry_countersnapshot_p20260228", 2, 500),
                           ("telemetry_countersnapshot_p20260302", 1, 400)]
        assert last == [(1, T0 + dt.timedelta(days=2, seconds=45), 400, 21, 1.7e9, {"stop": 3}),
                        (2, None, None, None, None, None)]
    finally:
        pg.stop()
