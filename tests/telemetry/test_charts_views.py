"""Dashboard selectors and JSON views over seeded rollups: exact figures, scoping, alerts, bad input → 4xx."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from telemetry import gpu_selectors, metering_selectors
from tests import factories
from tests.telemetry import dash_support as seed

NOW = dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=dt.UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def test_card_figures_alerts_and_fleet_totals(world, client_for) -> None:
    # given: site A (1,250 kW, PUE 1.30, target 70 %) with 2 GPUs reporting in the live window, and a quiet hour
    site = world.site_a
    site.power_capacity_kw, site.pue, site.gpu_poll_interval_s = Decimal("0.5"), Decimal("1.30"), 10
    site.save()
    gpu_2 = factories.GpuFactory(node=world.node_a, index=1)
    for ts in (NOW - dt.timedelta(seconds=20), NOW - dt.timedelta(seconds=10)):
        seed.sample(gpu=world.gpu_a, ts=ts, util_pct=80, power_w=300.0)
        seed.sample(gpu=gpu_2, ts=ts, util_pct=40, power_w=100.0)
    seed.sample(gpu=gpu_2, ts=NOW - dt.timedelta(seconds=45), util_pct=0, power_w=50.0)  # outside 3 × 10 s
    seed.minute_rollups(site=site, start=NOW.replace(second=0) - dt.timedelta(minutes=60), minutes=60, util=35.0,
                        power_w=400.0, gpus=2)
    # 2 series on the endpoint: 3,000 tokens over 30 s + 600 tokens over 60 s = 100 + 10 tokens/s
    seed.usage(endpoint=world.endpoint_a, model="llama", end=NOW - dt.timedelta(seconds=5), seconds=30, prompt=1000,
               generation=2000, ttft=(2.0, 8))
    seed.usage(endpoint=world.endpoint_a, model="qwen", end=NOW - dt.timedelta(seconds=5), seconds=60, prompt=100,
               generation=500)
    client = client_for("viewer")
    # when
    data = client.get(reverse("sites:overview_data")).json()
    # then
    f, p = data["fields"], f"site-{site.pk}-"
    assert f[p + "util"] == "60 %"  # (80 + 80 + 40 + 40) / 4
    assert f[p + "power_drawn"] == "0.4 kW"  # 300 W + 100 W
    assert f[p + "power_pct"] == "80 % of contracted"
    assert f[p + "tokens_per_s"] == "110 tokens/s"
    assert f["fleet-util"] == "60 %" and f["fleet-tokens_per_s"] == "110 tokens/s"
    assert f[p + "revenue_today"] == "0.00 USD"  # from the tenants app's economics provider: nothing billed here
    texts = [a["text"] for a in data["alerts"]]
    assert any("over its contracted 0.5 kW" in t and "≈ 1 kW" in t for t in texts)  # 0.4 kW × 1.3 = 0.52 kW
    assert any("35 % GPU utilization over the last hour, below its 70 % target" in t for t in texts)
    assert world.site_b.name not in str(data)


def test_card_without_readings_says_so_and_greys_out(world, client_for) -> None:
    # given: a GPU but no samples
    client = client_for("operator")
    # when
    data = client.get(reverse("sites:site_data", args=[world.site_a.slug])).json()
    # then
    p = f"site-{world.site_a.pk}-"
    assert data["fields"][p + "util"] == "no telemetry yet"
    assert data["fields"][p + "tokens_per_s"] == "no telemetry yet"
    assert p + "util" in data["stale"]
    assert f"endpoint-{world.endpoint_a.pk}-tokens" in data["stale"]


def test_fleet_buckets_are_sample_weighted_hours(world) -> None:
    # given: one hour of minutes at 30 % with 6 samples each, then 30 minutes at 90 % with 12 samples each
    site = world.site_a
    start = dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.UTC)
    seed.minute_rollups(site=site, start=start, minutes=60, util=30.0, power_w=1000.0)
    seed.minute_rollups(site=site, start=start + dt.timedelta(hours=1), minutes=30, util=90.0, power_w=2000.0,
                        gpus=2)
    # when
    rows = gpu_selectors.sites_gpu_buckets(user=world.users["operator"], site_ids=[site.pk], start=start,
                                           end=start + dt.timedelta(days=2))[site.pk]
    outsider = gpu_selectors.sites_gpu_buckets(user=world.users["outsider"], site_ids=[site.pk], start=start,
                                               end=start + dt.timedelta(days=2))[site.pk]
    # then
    assert [r["bucket"] for r in rows] == [start, start + dt.timedelta(hours=1)]
    assert rows[0]["util_mean_pct"] == pytest.approx(30.0) and rows[1]["util_mean_pct"] == pytest.approx(90.0)
    assert rows[0]["power_mean_w"] == 1000.0 and rows[0]["energy_j"] == Decimal("360000.000")
    assert outsider == []


def test_heatmap_bins_and_caches_settled_days(world, django_assert_max_num_queries) -> None:
    # given: 30 days of hourly rollups of one GPU at 50 %, and today's hours at 90 %
    start = NOW - dt.timedelta(days=30)
    first_hour = start.replace(minute=0, second=0)
    seed.gpu_rollups(gpu=world.gpu_a, start=first_hour, count=30 * 24 - 12, util=50.0)
    seed.gpu_rollups(gpu=world.gpu_a, start=first_hour + dt.timedelta(hours=30 * 24 - 12), count=12, util=90.0)
    user = world.users["viewer"]
    # when
    first = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=start, end=NOW, now=NOW)
    with django_assert_max_num_queries(3):  # GPUs + today's chunk + the range's first partial day; days cached
        second = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=start, end=NOW, now=NOW)
    # then
    assert first == second
    assert first["step"] == dt.timedelta(hours=4) and len(first["columns"]) <= 181
    row = first["util_pct"][0]
    assert row[1] == pytest.approx(50.0) and row[-2] == pytest.approx(90.0)
    assert row[-1] is None  # the hour in progress has no hourly rollup yet: blank, not 0
    other = gpu_selectors.site_gpu_heatmap_binned(user=world.users["outsider"], site=world.site_a, start=start,
                                                  end=NOW, now=NOW)
    assert other["gpus"] == []


def test_usage_buckets_per_minute_then_hourly(world) -> None:
    # given
    ep = world.endpoint_a
    seed.usage(endpoint=ep, model="m", end=NOW - dt.timedelta(minutes=3), seconds=15, prompt=600, generation=1200,
               ok=2, failed=1, itl=(0.5, 25), rollup=True)
    user = world.users["operator"]
    # when
    minutes = metering_selectors.usage_buckets(user=user, start=NOW - dt.timedelta(hours=1), end=NOW,
                                               by=("model",), endpoint_id=ep.pk)
    hours = metering_selectors.usage_buckets(user=user, start=NOW - dt.timedelta(days=7), end=NOW, by=("model",),
                                             endpoint_id=ep.pk)
    # then
    assert len(minutes) == 1 and minutes[0]["seconds"] == 60
    assert minutes[0]["prompt_tokens_per_s"] == 10.0 and minutes[0]["generation_tokens_per_s"] == 20.0
    assert minutes[0]["itl_mean_s"] == 0.02 and minutes[0]["ttft_mean_s"] is None
    assert hours[0]["seconds"] == 3600 and hours[0]["generation_tokens"] == 1200
    assert metering_selectors.usage_buckets(user=world.users["charlie"], start=NOW - dt.timedelta(hours=1), end=NOW,
                                            endpoint_id=ep.pk) == []


def test_gpu_page_shows_unsupported_as_such_never_zero(world, client_for) -> None:
    # given: a reading with power not supported and utilization really 0
    seed.sample(gpu=world.gpu_a, ts=NOW - dt.timedelta(seconds=5), util_pct=0, power_w=None, energy_mj=None,
                temperature_c=44, throttle_reasons=0x4, unsupported={"power_w": "NVMLError_NotSupported",
                                                                     "energy_mj": "NVMLError_NotSupported"})
    client = client_for("operator")
    # when
    data = client.get(reverse("telemetry:gpu_live", args=[world.site_a.slug, world.gpu_a.pk])).json()
    page = client.get(reverse("telemetry:gpu_detail", args=[world.site_a.slug, world.gpu_a.pk]))
    # then
    f = data["fields"]
    assert f["gpu-util"] == "0 %"
    assert f["gpu-power"] == "not supported (NVMLError_NotSupported)"
    assert f["gpu-energy_counter"] == "not supported (NVMLError_NotSupported)"
    assert f["gpu-mem_clock"] == "not reported"
    assert f["gpu-throttle"] == "software power cap"
    assert f["gpu-temperature"] == "44 °C"
    assert "not supported (NVMLError_NotSupported)" in page.content.decode()


@pytest.mark.parametrize("route,name", [("telemetry:gpu_chart", "nope"), ("telemetry:endpoint_chart", "nope")])
def test_unknown_chart_is_404_and_bad_range_is_400(world, client_for, route, name) -> None:
    # given
    client = client_for("operator")
    pk = world.gpu_a.pk if "gpu" in route else world.endpoint_a.pk
    # when
    unknown = client.get(reverse(route, args=[world.site_a.slug, pk, name]))
    bad = client.get(reverse(route, args=[world.site_a.slug, pk, "tokens" if "endpoint" in route else "util"]),
                     {"range": "custom", "start": "x", "end": "y"})
    # then
    assert unknown.status_code == 404
    assert bad.status_code == 400 and "must be a date and time" in bad.json()["detail"]


def test_endpoint_charts_and_page_escape_hostile_labels(world, client_for) -> None:
    # given
    hostile = '<script>alert(1)</script>'
    seed.usage(endpoint=world.endpoint_a, model=hostile, labels={"tenant_id": '"><img src=x onerror=alert(1)>'},
               end=NOW - dt.timedelta(minutes=2), seconds=15, prompt=10, generation=20, rollup=True)
    client = client_for("viewer")
    # when
    fig = client.get(reverse("telemetry:endpoint_chart", args=[world.site_a.slug, world.endpoint_a.pk, "tokens"]))
    page = client.get(reverse("telemetry:endpoint_detail", args=[world.site_a.slug, world.endpoint_a.pk]))
    # then
    names = [t["name"] for t in fig.json()["data"]]
    assert names == ["&lt;script&gt;alert(1)&lt;/script&gt; · in", "&lt;script&gt;alert(1)&lt;/script&gt; · out"]
    body = page.content.decode()
    assert hostile not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
