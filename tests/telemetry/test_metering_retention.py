"""Counter snapshot retention: whole day partitions are dropped (PostgreSQL), and no series loses its baseline,
because the counters the next reading is diffed against live on the series (`EngineSeries.last_*`)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.apps import apps
from django.db import connection

from telemetry import metering_services, retention
from telemetry.models.metering import CounterSnapshot, EngineSeries, UsageDelta
from telemetry.tasks.metering import counter_snapshots_prune_task, endpoints_scrape_task
from tests import factories
from tests.telemetry.metering_server import EngineServer, vllm_page

NOW = dt.datetime(2026, 3, 20, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def server():
    with EngineServer() as s:
        yield s


def poll(endpoint_ids: list[int], at: dt.datetime) -> dict:
    with time_machine.travel(at, tick=False):
        return endpoints_scrape_task.run(endpoint_ids=endpoint_ids)


def snapshot_days() -> set[dt.date]:
    return set(retention.COUNTER_SNAPSHOTS.existing())


def test_counter_snapshots_are_a_table_partitioned_by_day_keyed_by_series_and_time(db):
    # given the migrated database / when its catalog is read
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'telemetry_countersnapshot'")
        kind = cursor.fetchone()[0]
        cursor.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = 'telemetry_countersnapshot'::regclass AND contype IN ('p', 'f')")
        constraints = [row[0] for row in cursor.fetchall()]
    # then: partitioned ('p'), primary key (series_id, scraped_at), no foreign key to lock the series table with
    assert kind == "p"
    assert constraints == ["PRIMARY KEY (series_id, scraped_at)"]


def test_retention_drops_old_days_and_an_idle_series_next_scrape_is_exact(world, server, settings):
    # given 7 days of retention; a busy endpoint polled 10, 9 and 1 day ago, an idle one last seen 10 days ago
    settings.RAW_SAMPLE_RETENTION_DAYS = 7
    busy = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/busy"))
    idle = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/idle"))
    server.set("/idle", vllm_page(engines={"0": (5, 5)}))
    for days_ago, tokens in ((10, 100), (9, 150), (1, 170)):
        server.set("/busy", vllm_page(engines={"0": (tokens, tokens)}))
        poll([busy.pk, idle.pk] if days_ago == 10 else [busy.pk], NOW - dt.timedelta(days=days_ago))
    deltas_before = UsageDelta.objects.count()
    assert {(NOW - dt.timedelta(days=n)).date() for n in (10, 9, 1)} <= snapshot_days()  # made on demand

    # when retention runs, twice
    with time_machine.travel(NOW, tick=False):
        first = counter_snapshots_prune_task.run()
        second = counter_snapshots_prune_task.run()

    # then the two old days' partitions went (the idle series' only snapshot with them), the second run drops
    # nothing, the next days' partitions exist ahead, and deltas are untouched
    assert first["partitions_dropped"] == 2 and second["partitions_dropped"] == 0
    assert second["partitions_created"] == 0
    days = snapshot_days()
    assert not {d for d in days if d < (NOW - dt.timedelta(days=8)).date()}
    assert {NOW.date() + dt.timedelta(days=n) for n in range(-1, 4)} <= days
    kept = {(s.series.endpoint_id, (NOW - s.scraped_at).days) for s in CounterSnapshot.objects.all()}
    assert kept == {(busy.pk, 1)}
    assert UsageDelta.objects.count() == deltas_before == 2
    # and the next polls diff against the series' last counters, the idle one's older than any snapshot left
    server.set("/busy", vllm_page(engines={"0": (200, 230)}))
    server.set("/idle", vllm_page(engines={"0": (9, 5)}))
    poll([busy.pk, idle.pk], NOW)
    busy_delta = UsageDelta.objects.get(endpoint=busy, interval_end=NOW)
    idle_delta = UsageDelta.objects.get(endpoint=idle)
    assert (busy_delta.prompt_tokens, busy_delta.generation_tokens, busy_delta.reset) == (30, 60, False)
    assert (idle_delta.prompt_tokens, idle_delta.generation_tokens, idle_delta.reset) == (4, 0, False)
    assert idle_delta.interval_start == NOW - dt.timedelta(days=10)


def test_a_retried_or_older_scrape_never_double_counts_nor_moves_the_last_counters_back(world, server, settings):
    # given an endpoint polled at t0 (baseline) and t2
    settings.RAW_SAMPLE_RETENTION_DAYS = 7
    endpoint = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/m"))
    t0, t1, t2 = NOW, NOW + dt.timedelta(seconds=15), NOW + dt.timedelta(seconds=30)
    for at, tokens in ((t0, 100), (t2, 150)):
        server.set("/m", vllm_page(engines={"0": (tokens, tokens * 2)}))
        poll([endpoint.pk], at)

    # when the t2 poll is retried (the page has moved on since) and a late poll from t1 arrives, each twice
    server.set("/m", vllm_page(engines={"0": (400, 800)}))
    retried = [poll([endpoint.pk], t2) for _ in range(2)]
    server.set("/m", vllm_page(engines={"0": (120, 240)}))
    late = [poll([endpoint.pk], t1) for _ in range(2)]

    # then both are skipped: one delta (t0 → t2), the last counters still t2's
    assert [r["skipped"] for r in retried + late] == [1, 1, 1, 1]
    assert [r["snapshots"] for r in retried + late] == [0, 0, 0, 0]
    assert list(UsageDelta.objects.filter(endpoint=endpoint).values_list("prompt_tokens", "generation_tokens")) == [
        (50, 100)]
    series = EngineSeries.objects.get(endpoint=endpoint)
    assert (series.last_scraped_at, series.last_prompt_tokens, series.last_generation_tokens) == (t2, 150, 300)

    # and after every snapshot partition is gone, the next poll is diffed against t2's counters exactly once
    with time_machine.travel(t2 + dt.timedelta(days=9), tick=False):
        dropped = counter_snapshots_prune_task.run()["partitions_dropped"]
    assert dropped >= 1 and not CounterSnapshot.objects.filter(series=series).exists()
    t3 = t2 + dt.timedelta(days=9)
    server.set("/m", vllm_page(engines={"0": (175, 330)}))
    results = [poll([endpoint.pk], t3) for _ in range(2)]
    assert [r["deltas"] for r in results] == [1, 0]
    delta = UsageDelta.objects.get(endpoint=endpoint, interval_end=t3)
    assert (delta.interval_start, delta.prompt_tokens, delta.generation_tokens) == (t2, 25, 30)
    assert sum(UsageDelta.objects.filter(endpoint=endpoint).values_list("prompt_tokens", flat=True)) == 75


@pytest.mark.parametrize("store", ["_PgStore", "_OrmStore"])
def test_the_last_counters_are_never_moved_back_by_an_older_reading(world, store):
    # given a series whose last counters are from t1
    endpoint = factories.ServingEndpointFactory(site=world.site_a)
    t0, t1 = NOW, NOW + dt.timedelta(minutes=1)
    series = EngineSeries.objects.create(endpoint=endpoint, key="k", first_seen_at=t0, last_seen_at=t1,
                                         last_scraped_at=t1, last_prompt_tokens=500, last_generation_tokens=900)
    reading = {"series_id": series.pk, "process_start_time_s": 1.7e9, "requests_by_reason": {"stop": 3},
               **{f: 1 for f in metering_services.COUNTER_FIELDS}}

    # when the store, within a batch of that series, is asked to write an older and then an equal reading
    writer = getattr(metering_services, store)()
    row = metering_services._SeriesRow(endpoint_id=endpoint.pk, key="k", model="", labels={}, split_labels={},
                                       first_seen_at=t0, last_seen_at=t1)
    known = []
    for scraped_at in (t0, t1):
        writer.upsert_series([row])
        known.append(writer.latest_snapshots({series.pk})[series.pk].prompt_tokens)
        writer.store_last_counters([{**reading, "scraped_at": scraped_at}])
    series.refresh_from_db()
    unchanged = (series.last_scraped_at, series.last_prompt_tokens, series.last_requests_by_reason)
    # and a newer one
    writer.upsert_series([row])
    writer.store_last_counters([{**reading, "scraped_at": t1 + dt.timedelta(seconds=15)}])
    series.refresh_from_db()

    # then only the newer one moved them
    assert known == [500, 500]
    assert unchanged == (t1, 500, None)
    assert (series.last_scraped_at, series.last_prompt_tokens, series.last_requests_by_reason) == (
        t1 + dt.timedelta(seconds=15), 1, {"stop": 3})


def test_the_migration_fills_the_last_counters_from_each_series_newest_snapshot(world):
    # given two series with snapshots and no last counters (as before the migration), and one without snapshots
    from importlib import import_module

    migration = import_module("telemetry.migrations.0007_counter_snapshot_partitions")
    endpoint = factories.ServingEndpointFactory(site=world.site_a)
    a, b, c = (EngineSeries.objects.create(endpoint=endpoint, key=k, first_seen_at=NOW, last_seen_at=NOW)
               for k in "abc")
    retention.counter_snapshot_partitions_ensure(days=[NOW.date() + dt.timedelta(days=n) for n in (-1, 0, 2)])
    CounterSnapshot.objects.bulk_create([
        CounterSnapshot(series=a, scraped_at=NOW, prompt_tokens=10, requests_by_reason={"stop": 1}),
        CounterSnapshot(series=a, scraped_at=NOW + dt.timedelta(days=2), prompt_tokens=30, generation_tokens=7,
                        process_start_time_s=1.7e9, requests_by_reason={"stop": 4}),
        CounterSnapshot(series=b, scraped_at=NOW - dt.timedelta(days=1), prompt_tokens=5),
    ])

    # when the migration's data step runs (twice: it is idempotent)
    for _ in range(2):
        migration.fill_last_counters(apps, None)

    # then each series carries its newest snapshot's counters
    a.refresh_from_db()
    b.refresh_from_db()
    c.refresh_from_db()
    assert (a.last_scraped_at, a.last_prompt_tokens, a.last_generation_tokens, a.last_process_start_time_s,
            a.last_requests_by_reason) == (NOW + dt.timedelta(days=2), 30, 7, 1.7e9, {"stop": 4})
    assert (b.last_scraped_at, b.last_prompt_tokens) == (NOW - dt.timedelta(days=1), 5)
    assert (c.last_scraped_at, c.last_prompt_tokens) == (None, None)
