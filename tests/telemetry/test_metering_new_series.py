"""A series that first appears on an endpoint already being scraped (a new `tenant_id` on a shared SGLang
endpoint) is counted from zero: its whole value was served since the previous scrape. A series on an endpoint
scraped for the first time is a baseline. Editing an endpoint's configured model never re-counts a series."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db.models import Sum

from telemetry.models.metering import EngineSeries, UsageDelta
from telemetry.tasks.metering import endpoints_scrape_task
from tests import factories
from tests.telemetry.metering_server import EngineServer

T0 = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)
START = 1.7e9


def sglang_page(tenants: dict[str, tuple[int, int]], start_time: float = START) -> str:
    lines = ["# TYPE process_start_time_seconds gauge", f"process_start_time_seconds {start_time}",
             "# TYPE sglang:prompt_tokens_total counter"]
    lines += [f'sglang:prompt_tokens_total{{model_name="m",tenant_id="{t}"}} {p}' for t, (p, _g) in tenants.items()]
    lines.append("# TYPE sglang:generation_tokens_total counter")
    lines += [f'sglang:generation_tokens_total{{model_name="m",tenant_id="{t}"}} {g}'
              for t, (_p, g) in tenants.items()]
    return "\n".join(lines) + "\n"


def tgi_page(prompt: int, generated: int) -> str:
    return "\n".join([
        "# TYPE process_start_time_seconds gauge", f"process_start_time_seconds {START}",
        "# TYPE tgi_request_input_length histogram", f"tgi_request_input_length_sum {prompt}",
        "tgi_request_input_length_count 1",
        "# TYPE tgi_request_generated_tokens histogram", f"tgi_request_generated_tokens_sum {generated}",
        "tgi_request_generated_tokens_count 1",
    ]) + "\n"


@pytest.fixture
def server():
    with EngineServer() as s:
        yield s


def poll(endpoint_id: int, at: dt.datetime) -> None:
    with time_machine.travel(at, tick=False):
        endpoints_scrape_task.run(endpoint_ids=[endpoint_id])
        endpoints_scrape_task.run(endpoint_ids=[endpoint_id])  # a retried poll changes nothing


def generation_by_tenant(endpoint) -> dict[str, int]:
    rows = (UsageDelta.objects.filter(endpoint=endpoint).values("series__labels__tenant_id")
            .annotate(g=Sum("generation_tokens")))
    return {r["series__labels__tenant_id"]: r["g"] for r in rows}


@pytest.mark.django_db
def test_a_tenant_label_that_appears_later_is_counted_from_zero(world, server):
    # given a shared SGLang endpoint that so far served only acme
    endpoint = factories.ServingEndpointFactory(site=world.site_a, engine="sglang", metrics_url=server.url("/s"))
    server.set("/s", sglang_page({"acme": (100, 400)}))
    poll(endpoint.pk, T0)  # first scrape of the endpoint: a baseline, nothing billed
    # when globex sends its first requests (its counters are created at 30 and 70) and acme goes on
    server.set("/s", sglang_page({"acme": (150, 500), "globex": (30, 70)}))
    poll(endpoint.pk, T0 + dt.timedelta(seconds=15))
    server.set("/s", sglang_page({"acme": (160, 520), "globex": (45, 100)}))
    poll(endpoint.pk, T0 + dt.timedelta(seconds=30))
    # then every token served after the endpoint's first scrape is counted exactly once
    assert generation_by_tenant(endpoint) == {"acme": 100 + 20, "globex": 70 + 30}


@pytest.mark.django_db
def test_series_on_a_newly_registered_endpoint_are_a_baseline(world, server):
    endpoint = factories.ServingEndpointFactory(site=world.site_a, engine="sglang", metrics_url=server.url("/s"))
    server.set("/s", sglang_page({"acme": (100, 400), "globex": (5, 9)}))
    poll(endpoint.pk, T0)
    assert UsageDelta.objects.filter(endpoint=endpoint).count() == 0


@pytest.mark.django_db
def test_editing_the_configured_model_of_a_model_less_engine_keeps_the_series(world, server):
    # given a TGI endpoint (no model label) already metered
    endpoint = factories.ServingEndpointFactory(site=world.site_a, engine="tgi", metrics_url=server.url("/t"),
                                                served_model="old/name")
    server.set("/t", tgi_page(1000, 4000))
    poll(endpoint.pk, T0)
    server.set("/t", tgi_page(1010, 4040))
    poll(endpoint.pk, T0 + dt.timedelta(seconds=15))
    # when the operator corrects the model name
    endpoint.served_model = "meta-llama/Llama-3.1-8B-Instruct"
    endpoint.save()
    server.set("/t", tgi_page(1020, 4080))
    poll(endpoint.pk, T0 + dt.timedelta(seconds=30))
    # then it is the same series and the cumulative 4,080 is not counted again
    assert EngineSeries.objects.filter(endpoint=endpoint).count() == 1
    assert UsageDelta.objects.filter(endpoint=endpoint).aggregate(g=Sum("generation_tokens"))["g"] == 80
