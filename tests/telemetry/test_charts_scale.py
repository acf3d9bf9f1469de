"""Dashboards at fleet scale: every SQL aggregation equals the figure computed the slow way (row by row in Python)
on a small fixture, the heatmap's utilization blocks are filled idempotently by the rollup service, big sites get
node rows, and cached pieces never hide a new reading from the next live refresh."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from sites.choices import GpuStatus
from sites.dashboard import gpu_state, node_gpu_states, site_cards
from telemetry import gpu_selectors, metering_selectors, rollups
from telemetry.models import GpuRollup1h, GpuUtilRollup
from tests import factories
from tests.telemetry import dash_support as seed
from tests.telemetry.dash_support import DAY0, NOW, frozen_now  # noqa: F401 - a fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_now")]




def test_util_blocks_equal_weighted_hourly_means_and_rerun_changes_nothing(world) -> None:
    # given: three days of uneven hourly rollups of two GPUs
    gpu_2 = factories.GpuFactory(node=world.node_a, index=1)
    seed.hourly_uneven(world.gpu_a, DAY0, 72)
    seed.hourly_uneven(gpu_2, DAY0, 72, phase=3)
    # when: the rollup service computes the blocks, twice
    first = rollups.gpu_util_rollup_compute(start=DAY0, end=DAY0 + dt.timedelta(days=3))
    before = sorted(GpuUtilRollup.objects.values_list("gpu_id", "span_h", "bucket", "util_samples", "util_mean_pct"))
    second = rollups.gpu_util_rollup_compute(start=DAY0, end=DAY0 + dt.timedelta(days=3))
    after = sorted(GpuUtilRollup.objects.values_list("gpu_id", "span_h", "bucket", "util_samples", "util_mean_pct"))
    # then
    # per GPU 6 h and days; per node hours, 6 h and days; the site's vectors of hours, 6 h and days
    assert first == second == 2 * (12 + 3) + (72 + 12 + 3) + (72 + 12 + 3)
    assert [(g, s, b, n, pytest.approx(m)) for g, s, b, n, m in before] == after
    for gpu_id, span_h, bucket, n, mean in after:
        end = bucket + dt.timedelta(hours=span_h)
        assert mean == pytest.approx(seed.util_mean_slow([gpu_id], bucket, end))
        assert n == sum(GpuRollup1h.objects.filter(gpu_id=gpu_id, bucket__gte=bucket, bucket__lt=end)
                        .values_list("util_samples", flat=True))


def test_hourly_rollup_run_keeps_the_block_in_progress_current(world) -> None:
    # given: minute rollups of the hour in progress
    start = NOW.replace(minute=0, second=0)
    seed.gpu_rollups(gpu=world.gpu_a, start=start, count=10, util=40.0, model=rollups.GpuRollup1m,
                     step=dt.timedelta(minutes=1))
    # when: the hourly rollup is computed (as every rollup run does), twice
    rollups.gpu_rollup_1h_compute(start=start, end=NOW)
    rollups.gpu_rollup_1h_compute(start=start, end=NOW)
    # then: today's 6-hour block and the day exist, with the hour's samples
    blocks = {b.span_h: b for b in GpuUtilRollup.objects.filter(gpu=world.gpu_a)}
    assert set(blocks) == {6, 24}
    assert blocks[6].bucket == NOW.replace(hour=12, minute=0, second=0)
    assert blocks[24].bucket == NOW.replace(hour=0, minute=0, second=0)
    assert blocks[6].util_samples == blocks[24].util_samples == 60 and blocks[24].util_mean_pct == 40.0


@pytest.mark.parametrize(("columns", "days"), [(36, 1), (24, 2)])  # day blocks as they are, and binned by 2
def test_heatmap_from_day_blocks_equals_the_slow_way(world, monkeypatch, columns, days) -> None:
    # given: three GPUs with uneven hourly rollups, their blocks, and a plan with day columns (a big site's)
    gpus = [world.gpu_a, factories.GpuFactory(node=world.node_a, index=1),
            factories.GpuFactory(node=world.node_a, index=2)]
    for i, g in enumerate(gpus):
        seed.hourly_uneven(g, DAY0 - dt.timedelta(days=27), 24 * 30 + 12, phase=i)
    rollups.gpu_util_rollup_compute(start=DAY0 - dt.timedelta(days=27), end=NOW)
    monkeypatch.setattr(gpu_selectors, "HEATMAP_MAX_CELLS", columns * len(gpus))
    start = NOW - dt.timedelta(days=30)
    # when
    heatmap = gpu_selectors.site_gpu_heatmap_binned(user=world.users["viewer"], site=world.site_a, start=start,
                                                    end=NOW, now=NOW)
    # then
    assert heatmap["step"] == dt.timedelta(days=days) and heatmap["rows"] == "gpu"
    for r, gpu_id in enumerate(heatmap["gpu_ids"]):
        for c, col in enumerate(heatmap["columns"]):
            expected = seed.util_mean_slow([gpu_id], col, col + heatmap["step"])
            assert heatmap["util_pct"][r][c] == (pytest.approx(expected) if expected is not None else None)


def test_big_site_heatmap_rows_are_node_means_equal_to_the_slow_way(world, monkeypatch) -> None:
    # given: 5 GPUs on 2 nodes, and a row limit of 3 (a big site in miniature)
    node_b = factories.NodeFactory(site=world.site_a, hostname="zz-<b>node</b>")
    gpus = {world.node_a.pk: [world.gpu_a, factories.GpuFactory(node=world.node_a, index=1)],
            node_b.pk: [factories.GpuFactory(node=node_b, index=i) for i in range(3)]}
    for i, g in enumerate(g for group in gpus.values() for g in group):
        seed.hourly_uneven(g, NOW.replace(minute=0, second=0) - dt.timedelta(hours=30), 30, phase=i)
    rollups.gpu_util_rollup_compute(start=NOW - dt.timedelta(hours=30), end=NOW)  # node rows read node blocks
    monkeypatch.setattr(gpu_selectors, "HEATMAP_MAX_ROWS", 3)
    start = NOW - dt.timedelta(hours=24)
    # when
    heatmap = gpu_selectors.site_gpu_heatmap_binned(user=world.users["viewer"], site=world.site_a, start=start,
                                                    end=NOW, now=NOW)
    from telemetry.charts import heatmap_figure
    fig = heatmap_figure(heatmap=heatmap, time_zone="UTC")
    # then: a row per node, named with its GPU count, each cell the sample-weighted mean of the node's GPUs
    assert heatmap["rows"] == "node" and heatmap["gpu_count"] == 5
    assert heatmap["gpus"] == [f"{world.node_a.hostname} (2 GPUs)", "zz-<b>node</b> (3 GPUs)"]
    for r, node_id in enumerate([world.node_a.pk, node_b.pk]):
        ids = [g.pk for g in gpus[node_id]]
        for c, col in enumerate(heatmap["columns"]):
            expected = seed.util_mean_slow(ids, col, col + heatmap["step"])
            assert heatmap["util_pct"][r][c] == (pytest.approx(expected) if expected is not None else None)
    assert fig["data"][0]["y"][1] == "zz-&lt;b&gt;node&lt;/b&gt; (3 GPUs)"
    assert fig["layout"]["yaxis"]["title"]["text"].startswith("node (mean of its GPUs)")
    assert "5 GPUs: one row per node" in fig["layout"]["annotations"][0]["text"]
    # and with fewer rows allowed than nodes, bins of consecutive nodes
    monkeypatch.setattr(gpu_selectors, "HEATMAP_MAX_ROWS", 1)
    binned = gpu_selectors.site_gpu_heatmap_binned(user=world.users["viewer"], site=world.site_a, start=start,
                                                   end=NOW, now=NOW)
    assert binned["rows"] == "nodes" and binned["gpus"] == [f"{world.node_a.hostname} … zz-<b>node</b> (5 GPUs)"]
    col = binned["columns"][3]
    every_gpu = [g.pk for gs in gpus.values() for g in gs]
    assert binned["util_pct"][0][3] == pytest.approx(seed.util_mean_slow(every_gpu, col, col + binned["step"]))


def test_cached_heatmap_shows_a_new_reading_on_the_next_refresh(world) -> None:
    # given: a 24-hour heatmap read once (settled pieces now cached)
    seed.hourly_uneven(world.gpu_a, NOW.replace(minute=0, second=0) - dt.timedelta(hours=30), 30)
    user, start = world.users["viewer"], NOW - dt.timedelta(hours=24)
    first = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=start, end=NOW, now=NOW)
    assert first["util_pct"][0][-1] is None  # the hour in progress has not rolled up yet
    # when: the hour in progress rolls up, and a late hourly row lands in a settled (cached) hour
    seed.gpu_rollups(gpu=world.gpu_a, start=NOW.replace(minute=0, second=0), count=1, util=77.0)
    second = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=start, end=NOW, now=NOW)
    # then: the live tail is read on every refresh; settled pieces come from the cache
    assert second["util_pct"][0][-1] == 77.0
    assert second["util_pct"][0][:-2] == first["util_pct"][0][:-2]


def test_gpu_states_in_sql_equal_gpu_state_per_gpu(world) -> None:
    # given: GPUs in every state on two sites with different poll intervals
    site_b_like = world.site_a
    site_b_like.gpu_poll_interval_s = 30
    site_b_like.save()
    node_2 = factories.NodeFactory(site=world.site_a)
    fixtures = [(GpuStatus.OK, 10), (GpuStatus.OK, 89), (GpuStatus.OK, 91), (GpuStatus.OK, None),
                (GpuStatus.UNHEALTHY, 5), (GpuStatus.LOST, 5), (GpuStatus.OK, -5)]
    for i, (status, age) in enumerate(fixtures):
        factories.GpuFactory(node=node_2 if i % 2 else world.node_a, status=status,
                             last_seen_at=None if age is None else NOW - dt.timedelta(seconds=age))
    world.gpu_b.last_seen_at = NOW - dt.timedelta(seconds=35)
    world.gpu_b.save()
    from sites.models import Gpu, Site

    sites = list(Site.objects.all())
    # when
    fast = node_gpu_states(user=world.users["operator"], sites=sites, now=NOW)
    # then: the slow way, per GPU
    slow: dict = {}
    for g in Gpu.objects.select_related("node__site").filter(node__site__partner=world.site_a.partner):
        state = gpu_state(status=g.status, last_seen_at=g.last_seen_at, poll_interval_s=g.node.site.gpu_poll_interval_s,
                          now=NOW)
        counts = slow.setdefault(g.node.site_id, {}).setdefault(g.node_id, dict.fromkeys(
            ("online", "stale", "unhealthy", "lost"), 0))
        counts[state] += 1
    assert fast == slow
    assert world.site_b.pk not in fast  # another partner's GPUs are not counted


def test_site_cards_and_live_json_cost_the_same_queries_for_many_gpus(world, client_for) -> None:
    # given: the site with 1 GPU, measured; then 40 more GPUs on 5 more nodes with versions
    client = client_for("viewer")
    url = reverse("sites:site_data", args=[world.site_a.slug])
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for n in range(5):
        node = factories.NodeFactory(site=world.site_a)
        for i in range(8):
            factories.GpuFactory(node=node, index=i, driver_version=f"570.{n}", cuda_driver_version="12.8",
                                 last_seen_at=NOW)
    # when
    with CaptureQueriesContext(connection) as many:
        data = client.get(url).json()
    cards = site_cards(user=world.users["viewer"], site=world.site_a, now=NOW)
    # then: no query per GPU or per node, and the counts are right
    assert len(many.captured_queries) <= len(few.captured_queries) + 1  # + the GPU version labels
    assert data["fields"][f"site-{world.site_a.pk}-gpus_total"] == "41"
    assert cards[0].gpus["online"] == 40


def test_gpu_version_groups_count_every_gpu_in_compliance(world) -> None:
    # given: a baseline, 3 GPUs on the pinned driver, 2 drifting, 1 not reporting
    site = world.site_a
    site.baseline_driver_version = "570.133"
    site.save()
    for v in ("570.133.20", "570.133.20", "570.133.20", "565.57.01", "565.57.01", ""):
        factories.GpuFactory(node=world.node_a, driver_version=v)
    # when
    card = site_cards(user=world.users["viewer"], site=site, now=NOW)[0]
    # then: the two drifting GPUs count twice, shown once with their number
    gpu_items = [i for i in card.compliance.items if i.kind == "gpu"]
    assert sorted((i.count, i.state) for i in gpu_items) == [(2, "drift"), (3, "ok")]
    drifting = next(i for i in gpu_items if i.state == "drift")
    assert drifting.label.startswith("2 GPUs (e.g. ") and card.compliance.drift >= 2


def test_usage_binned_in_sql_equals_hourly_sums(world) -> None:
    # given: hourly usage rollups over 30 days (seeded at every 5th hour, two models)
    ep = world.endpoint_a
    for h in range(0, 30 * 24, 5):
        end = NOW - dt.timedelta(hours=h, minutes=1)
        for model in ("a", "b"):
            seed.usage(endpoint=ep, model=model, end=end, seconds=15, prompt=1000 + h, generation=7 * h, ttft=(h, 3),
                       rollup=True)
    user, start = world.users["operator"], NOW - dt.timedelta(days=30)
    # when
    rows = metering_selectors.usage_buckets(user=user, start=start, end=NOW, by=("endpoint_id",), site_ids=[
        world.site_a.pk])
    # then: 3-hour bins, each the exact sum of its hours; rates per second of the bin (the last: of its time so far)
    assert metering_selectors.usage_bin_hours(start=start, end=NOW) == 3
    assert len(rows) <= metering_selectors.USAGE_MAX_BUCKETS
    from telemetry.models.metering import UsageRollup

    for r in rows:
        hourly = UsageRollup.objects.filter(endpoint=ep, bucket="hour", bucket_start__gte=r["bucket"],
                                            bucket_start__lt=r["bucket"] + dt.timedelta(hours=3))
        assert r["prompt_tokens"] == sum(u.prompt_tokens for u in hourly)
        span = min(10800.0, (NOW - r["bucket"]).total_seconds())
        assert r["prompt_tokens_per_s"] == pytest.approx(r["prompt_tokens"] / span)
        tc = sum(u.ttft_count for u in hourly)
        assert r["ttft_mean_s"] == pytest.approx(sum(u.ttft_sum_s for u in hourly) / tc)
    assert rows[0]["bucket"] >= start
    assert metering_selectors.usage_buckets(user=world.users["outsider"], start=start, end=NOW,
                                            site_ids=[world.site_a.pk]) == []
