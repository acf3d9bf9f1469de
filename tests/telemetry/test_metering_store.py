"""The two write paths of `scrape_outcomes_record` (set-based SQL on PostgreSQL, the ORM elsewhere) store the
same rows for the same sequence of pages: baselines, growth, a restart, a series appearing later, a retried poll."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from telemetry import metering_services
from telemetry.models.metering import CounterSnapshot, EngineSeries, UsageDelta
from tests import factories
from tests.telemetry.metering_server import EngineServer, vllm_page

T0 = dt.datetime(2026, 3, 2, 9, 58, 0, tzinfo=dt.UTC)
PAGES = [  # (engines → (prompt, generation), process start time)
    ({"0": (1000, 5000)}, 1.7e9),
    ({"0": (1100, 5400)}, 1.7e9),
    ({"0": (1150, 5500), "1": (30, 70)}, 1.7e9),  # a second engine appears: counted from zero
    ({"0": (40, 90), "1": (35, 80)}, 1.7e9 + 500),  # a restart: the new values are the delta
]


def run_pages(world, server, path: str) -> tuple[list, list]:
    endpoint = factories.ServingEndpointFactory(site=world.site_a, name=path, engine="auto",
                                                metrics_url=server.url(f"/{path}/metrics"))
    for n, (engines, start) in enumerate(PAGES):
        server.set(f"/{path}/metrics", vllm_page(engines=engines, start_time=start))
        with time_machine.travel(T0 + dt.timedelta(seconds=15 * n), tick=False):
            for _ in range(2):  # a retried poll changes nothing
                metering_services.endpoints_scrape(endpoint_ids=[endpoint.pk])
    keys = dict(EngineSeries.objects.filter(endpoint=endpoint).values_list("pk", "split_labels"))
    snapshots = sorted(
        (str(keys[s.series_id]), s.scraped_at, s.process_start_time_s, s.prompt_tokens, s.generation_tokens,
         s.requests_by_reason, s.kv_cache_usage, s.running)
        for s in CounterSnapshot.objects.filter(series__endpoint=endpoint))
    deltas = sorted(
        (str(keys[d.series_id]), d.interval_start, d.interval_end, d.prompt_tokens, d.generation_tokens, d.reset,
         d.requests_by_reason, d.rolled_up)
        for d in UsageDelta.objects.filter(endpoint=endpoint))
    return snapshots, deltas


@pytest.mark.django_db
def test_the_sql_and_the_orm_store_write_the_same_rows(world, monkeypatch) -> None:
    # given the same pages served to two endpoints
    with EngineServer() as server:
        # when one is recorded through the PostgreSQL store and the other through the ORM store
        sql_rows = run_pages(world, server, "sql")
        monkeypatch.setattr(metering_services, "_PgStore", metering_services._OrmStore)
        orm_rows = run_pages(world, server, "orm")
    # then
    assert sql_rows == orm_rows
    snapshots, deltas = sql_rows
    assert len(snapshots) == 6 and len(deltas) == 5
    assert [(d[3], d[4], d[5]) for d in deltas if d[0] == "{'engine': '0'}"] == [
        (100, 400, False), (50, 100, False), (40, 90, True)]
    assert [(d[3], d[4], d[5]) for d in deltas if d[0] == "{'engine': '1'}"] == [(30, 70, False), (35, 80, True)]
