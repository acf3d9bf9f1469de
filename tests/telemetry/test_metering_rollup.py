"""Usage rollups are exact whatever the lateness of a delta: claimed by a flag, buckets recomputed from the facts."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db.models import Sum

from telemetry import metering_services
from telemetry.models.metering import UsageBucket, UsageDelta, UsageRollup
from telemetry.tasks.metering import endpoints_scrape_task, usage_rollup_task
from tests import factories
from tests.telemetry.metering_server import EngineServer, vllm_page

T0 = dt.datetime(2026, 3, 2, 9, 58, 0, tzinfo=dt.UTC)


@pytest.fixture
def server():
    with EngineServer() as s:
        yield s


def rolled(endpoint, bucket: str) -> dict:
    return UsageRollup.objects.filter(endpoint=endpoint, bucket=bucket).aggregate(
        p=Sum("prompt_tokens"), g=Sum("generation_tokens"))


def test_a_delta_committed_five_hours_late_reaches_its_hour_and_day(world, server):
    # given endpoint A polled and rolled up every hour, and endpoint B whose 10:28 batch fetched but stalled
    a = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/a"))
    b = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/b"))
    server.set("/a", vllm_page(engines={"0": (0, 0)}))
    server.set("/b", vllm_page(engines={"0": (1000, 1000)}))
    with time_machine.travel(T0, tick=False):
        endpoints_scrape_task.run(endpoint_ids=[a.pk, b.pk])
    server.set("/b", vllm_page(engines={"0": (1040, 1070)}))
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        stalled = metering_services.endpoints_fetch(endpoints=[b])
    for hour in range(1, 6):
        server.set("/a", vllm_page(engines={"0": (hour * 10, hour * 20)}))
        with time_machine.travel(T0 + dt.timedelta(hours=hour), tick=False):
            endpoints_scrape_task.run(endpoint_ids=[a.pk])
            usage_rollup_task.run()
    assert rolled(b, UsageBucket.HOUR) == {"p": None, "g": None}

    # when the stalled batch commits five hours later and the rollup runs (twice)
    with time_machine.travel(T0 + dt.timedelta(hours=5, minutes=10), tick=False):
        metering_services.scrape_outcomes_record(outcomes=stalled)
        usage_rollup_task.run()
        usage_rollup_task.run()

    # then: B's 40/70 tokens sit in the 10:00 hour and in the day; A is unchanged and exact
    late = UsageDelta.objects.get(endpoint=b)
    assert (late.interval_end.hour, late.interval_end.minute, late.prompt_tokens) == (10, 28, 40)
    hourly_b = UsageRollup.objects.get(endpoint=b, bucket=UsageBucket.HOUR)
    assert (hourly_b.bucket_start, hourly_b.prompt_tokens, hourly_b.generation_tokens) == (
        dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC), 40, 70)
    assert rolled(b, UsageBucket.DAY) == {"p": 40, "g": 70}
    assert rolled(a, UsageBucket.HOUR) == rolled(a, UsageBucket.DAY) == {"p": 50, "g": 100}
    assert UsageRollup.objects.filter(endpoint=a, bucket=UsageBucket.HOUR).count() == 5
    assert not UsageDelta.objects.filter(rolled_up=False).exists()


def test_rollup_catches_up_in_batches_after_downtime_and_a_rerun_changes_nothing(world, server):
    # given a day and a half of 30-minute deltas never rolled up (the rollup worker was down)
    endpoint = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/r"))
    for step in range(0, 36 * 2 + 1):
        server.set("/r", vllm_page(engines={"0": (step * 3, step * 5)}))
        with time_machine.travel(T0 + dt.timedelta(minutes=30 * step), tick=False):
            endpoints_scrape_task.run(endpoint_ids=[endpoint.pk])
    # when it comes back, with small batches, and runs again
    written = metering_services.usage_rollup(batch_size=7)
    before = list(UsageRollup.objects.order_by("bucket", "bucket_start").values_list(
        "bucket", "bucket_start", "prompt_tokens", "generation_tokens"))
    again = metering_services.usage_rollup(batch_size=7)
    # then: every delta is in exactly one hour and one day, the rerun wrote nothing
    assert rolled(endpoint, UsageBucket.HOUR) == rolled(endpoint, UsageBucket.DAY) == {"p": 216, "g": 360}
    # deltas end at 10:28 … 21:58 the next day: 14 + 22 hours over two days
    assert UsageRollup.objects.filter(bucket=UsageBucket.HOUR).count() == 36
    assert UsageRollup.objects.filter(bucket=UsageBucket.DAY).count() == 2
    assert written >= 36 and again == 0
    assert list(UsageRollup.objects.order_by("bucket", "bucket_start").values_list(
        "bucket", "bucket_start", "prompt_tokens", "generation_tokens")) == before
