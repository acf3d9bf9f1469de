"""Counter snapshot retention: old snapshots go, the latest of every series stays (the next delta needs it)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from telemetry.models.metering import CounterSnapshot, UsageDelta
from telemetry.tasks.metering import counter_snapshots_prune_task, endpoints_scrape_task
from tests import factories
from tests.telemetry.metering_server import EngineServer, vllm_page

NOW = dt.datetime(2026, 3, 20, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def server():
    with EngineServer() as s:
        yield s


def poll(endpoint_ids: list[int], at: dt.datetime) -> None:
    with time_machine.travel(at, tick=False):
        endpoints_scrape_task.run(endpoint_ids=endpoint_ids)


def test_prune_keeps_recent_and_latest_snapshots_and_the_next_delta_is_exact(world, server, settings):
    # given 7 days of retention; a busy endpoint polled 10, 9 and 1 day ago, an idle one last seen 10 days ago
    settings.RAW_SAMPLE_RETENTION_DAYS = 7
    busy = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/busy"))
    idle = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/idle"))
    server.set("/idle", vllm_page(engines={"0": (5, 5)}))
    for days_ago, tokens in ((10, 100), (9, 150), (1, 170)):
        server.set("/busy", vllm_page(engines={"0": (tokens, tokens)}))
        poll([busy.pk, idle.pk] if days_ago == 10 else [busy.pk], NOW - dt.timedelta(days=days_ago))
    deltas_before = UsageDelta.objects.count()

    # when the prune runs, twice
    with time_machine.travel(NOW, tick=False):
        first = counter_snapshots_prune_task.run()
        second = counter_snapshots_prune_task.run()

    # then: only the busy endpoint's two old snapshots went; deltas are untouched
    assert (first, second) == (2, 0)
    kept = {(s.series.endpoint_id, (NOW - s.scraped_at).days) for s in CounterSnapshot.objects.all()}
    assert kept == {(busy.pk, 1), (idle.pk, 10)}
    assert UsageDelta.objects.count() == deltas_before == 2
    # and the next polls diff against the kept latest snapshots
    server.set("/busy", vllm_page(engines={"0": (200, 230)}))
    server.set("/idle", vllm_page(engines={"0": (9, 5)}))
    poll([busy.pk, idle.pk], NOW)
    assert UsageDelta.objects.get(endpoint=busy, interval_end=NOW).prompt_tokens == 30
    assert UsageDelta.objects.get(endpoint=busy, interval_end=NOW).generation_tokens == 60
    assert UsageDelta.objects.get(endpoint=idle).prompt_tokens == 4
