"""Pure chart helpers and the dashboard JSON views (scoping, bad input → 4xx, never 500)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.urls import reverse

from factory_portal.charts import MAX_POINTS, Series, downsample, escape_label, time_series_figure
from factory_portal.exceptions import ServiceError
from factory_portal.timerange import parse_time_range
from sites.charts import gpu_state_figure
from sites.dashboard import gpu_state

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def test_escape_label_neutralises_plotly_markup() -> None:
    # given / when / then
    assert escape_label("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"


def test_downsample_caps_points_and_keeps_gaps() -> None:
    # given: 10,000 points, the last 5,000 without readings
    x = list(range(10_000))
    y = [float(i) for i in range(5_000)] + [None] * 5_000
    # when
    dx, dy = downsample(x, y)
    # then
    assert len(dx) == len(dy) == MAX_POINTS
    assert dy[0] == 2.0  # mean of 0..4
    assert dy[-1] is None  # a gap stays a gap, never a zero
    assert downsample([1, 2], [3.0, None]) == ([1, 2], [3.0, None])


def test_time_series_figure_units_time_zone_and_cap() -> None:
    # given
    xs = [NOW + dt.timedelta(seconds=10 * i) for i in range(5_000)]
    series = [Series(name="gpu<0>", x=xs, y=[50.0] * 5_000)]
    # when
    fig = time_series_figure(series=series, y_title="utilization", y_unit="%", time_zone="Europe/Oslo",
                             empty_message="none")
    # then
    trace = fig["data"][0]
    assert len(trace["x"]) == MAX_POINTS
    assert trace["x"][0] == "2026-05-01T14:00:00"  # Oslo is UTC+2 in May
    assert trace["name"] == "gpu&lt;0&gt;"
    assert fig["layout"]["yaxis"]["title"]["text"] == "utilization (%)"
    assert fig["layout"]["xaxis"]["title"]["text"] == "time (Europe/Oslo)"


def test_time_series_figure_empty_says_why() -> None:
    # given / when
    fig = time_series_figure(series=[], y_title="power", y_unit="W", time_zone="UTC", empty_message="No telemetry")
    # then
    assert fig["data"] == [] and fig["meta"]["empty"] is True
    assert fig["layout"]["annotations"][0]["text"] == "No telemetry"


def test_gpu_state_figure_stacks_states_per_category() -> None:
    # given
    rows = [("node-1", {"online": 3, "stale": 1, "unhealthy": 0, "lost": 0}),
            ("<node-2>", {"online": 0, "stale": 0, "unhealthy": 1, "lost": 2})]
    # when
    fig = gpu_state_figure(rows=rows, category_title="node", empty_message="none")
    # then
    by_name = {t["name"]: t["y"] for t in fig["data"]}
    assert by_name == {"online": [3, 0], "stale": [1, 0], "unhealthy": [0, 1], "lost": [0, 2]}
    assert fig["data"][0]["x"] == ["node-1", "&lt;node-2&gt;"]
    assert fig["layout"]["yaxis"]["title"]["text"] == "GPUs (count)"
    assert gpu_state_figure(rows=[], category_title="node", empty_message="none")["meta"]["empty"] is True


def test_gpu_state_classification() -> None:
    # given / when / then
    fresh, old = NOW - dt.timedelta(seconds=25), NOW - dt.timedelta(seconds=31)
    assert gpu_state(status="ok", last_seen_at=fresh, poll_interval_s=10, now=NOW) == "online"
    assert gpu_state(status="ok", last_seen_at=old, poll_interval_s=10, now=NOW) == "stale"
    assert gpu_state(status="ok", last_seen_at=None, poll_interval_s=10, now=NOW) == "stale"
    assert gpu_state(status="lost", last_seen_at=fresh, poll_interval_s=10, now=NOW) == "lost"
    assert gpu_state(status="unhealthy", last_seen_at=fresh, poll_interval_s=10, now=NOW) == "unhealthy"


def test_parse_time_range_presets_and_custom() -> None:
    # given / when
    day = parse_time_range({}, now=NOW)
    hour = parse_time_range({"range": "1h"}, now=NOW)
    custom = parse_time_range({"range": "custom", "start": "2026-04-01T00:00", "end": "2026-04-02T00:00"},
                              time_zone="Europe/Oslo", now=NOW)
    # then
    assert (day.key, day.end - day.start) == ("24h", dt.timedelta(hours=24))
    assert hour.start == NOW - dt.timedelta(hours=1)
    assert custom.start == dt.datetime(2026, 3, 31, 22, 0, tzinfo=dt.UTC)
    assert "start=2026-04-01T00%3A00" in custom.query()


@pytest.mark.parametrize("params", [
    {"range": "2y"},
    {"range": "custom"},
    {"range": "custom", "start": "yesterday", "end": "2026-04-02T00:00"},
    {"range": "custom", "start": "2026-04-02T00:00", "end": "2026-04-01T00:00"},
    {"range": "custom", "start": "2020-01-01T00:00", "end": "2026-04-01T00:00"},
])
def test_parse_time_range_refuses_bad_input_with_a_message(params) -> None:
    # given / when / then
    with pytest.raises(ServiceError) as err:
        parse_time_range(params, now=NOW)
    assert err.value.message


@pytest.mark.django_db
def test_chart_json_bad_range_is_400_and_unknown_chart_is_404(world, client_for) -> None:
    # given
    client = client_for("operator")
    url = reverse("sites:site_chart", kwargs={"slug": world.site_a.slug, "name": "gpu_states"})
    # when
    bad = client.get(url + "?range=custom&start=x&end=y")
    unknown = client.get(reverse("sites:site_chart", kwargs={"slug": world.site_a.slug, "name": "nope"}))
    bad_overview = client.get(reverse("sites:overview_chart", kwargs={"name": "gpu_states"}) + "?range=9y")
    page = client.get(reverse("sites:site_detail", kwargs={"slug": world.site_a.slug}) + "?range=9y")
    # then
    assert bad.status_code == 400 and "date and time" in bad.json()["detail"]
    assert unknown.status_code == 404
    assert bad_overview.status_code == 400
    assert page.status_code == 200 and b"Unknown range" in page.content


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_overview_json_fields_and_query_count(world, client_for, django_assert_max_num_queries) -> None:
    # given: more sites must not mean more queries
    from tests import factories

    for _ in range(5):
        site = factories.SiteFactory(partner=world.partner_a)
        node = factories.NodeFactory(site=site)
        factories.GpuFactory(node=node, last_seen_at=NOW)
        factories.ServingEndpointFactory(site=site, node=node)
    client = client_for("viewer")
    # when: the cards' economics are computed once a minute per site (cached); the refreshes in between are flat
    import time_machine

    with time_machine.travel(NOW.replace(second=10), tick=False):
        client.get(reverse("sites:overview_data"))
    with time_machine.travel(NOW.replace(second=25), tick=False), django_assert_max_num_queries(12):
        data = client.get(reverse("sites:overview_data")).json()
    # then
    assert data["fields"][f"site-{world.site_a.pk}-gpus_stale"] == "1"  # never seen → stale
    assert data["fields"]["fleet-sites"] == "6"
    assert data["fields"]["fleet-gpus_online"] == "5"
    assert world.site_b.pk not in data["site_ids"]
    assert data["refresh_s"] <= 15
