"""Big sites, second round: per-node utilization blocks equal the slow way and follow new readings, blocks of history
rolled up before they existed are backfilled one day per rollup run, retention prunes blocks with the hourly rollups'
horizon, and the site page's node table lists every problem node while paging the healthy ones."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from sites.choices import NodeStatus
from telemetry import gpu_selectors, retention, rollups
from telemetry import views as telemetry_views
from telemetry.models import GpuRollup1h, GpuUtilRollup, NodeUtilRollup, RollupWatermark
from tests import factories
from tests.telemetry import dash_support as seed
from tests.telemetry.dash_support import DAY0, NOW, frozen_now  # noqa: F401 - a fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_now")]




def _two_nodes(world):
    node_b = factories.NodeFactory(site=world.site_a, hostname="zz-node")
    gpus = {world.node_a.pk: [world.gpu_a, factories.GpuFactory(node=world.node_a, index=1)],
            node_b.pk: [factories.GpuFactory(node=node_b, index=i) for i in range(3)]}
    return node_b, gpus


def _blocks(model) -> list[tuple]:
    key = "gpu_id" if model is GpuUtilRollup else "node_id"
    return sorted(model.objects.values_list(key, "span_h", "bucket", "util_samples", "util_mean_pct"))


def test_node_blocks_equal_weighted_means_of_their_gpus_and_rerun_changes_nothing(world) -> None:
    # given: two days of uneven hourly rollups of 5 GPUs on 2 nodes
    _, gpus = _two_nodes(world)
    for i, g in enumerate(g for group in gpus.values() for g in group):
        seed.hourly_uneven(g, DAY0, 48, phase=i)
    # when: the blocks are computed, twice
    rollups.gpu_util_rollup_compute(start=DAY0, end=DAY0 + dt.timedelta(days=2))
    before = _blocks(NodeUtilRollup)
    rollups.gpu_util_rollup_compute(start=DAY0, end=DAY0 + dt.timedelta(days=2))
    after = _blocks(NodeUtilRollup)
    # then: per node, 48 hours, 8 six-hour blocks and 2 days, each the sample-weighted mean of its GPUs' hours
    assert len(after) == 2 * (48 + 8 + 2)
    assert [(k, s, b, n, pytest.approx(m)) for k, s, b, n, m in before] == after
    for node_id, span_h, bucket, n, mean in after:
        ids = [g.pk for g in gpus[node_id]]
        end = bucket + dt.timedelta(hours=span_h)
        expected = seed.util_mean_slow(ids, bucket, end)
        assert mean == (pytest.approx(expected) if expected is not None else None)
        assert n == sum(GpuRollup1h.objects.filter(gpu_id__in=ids, bucket__gte=bucket, bucket__lt=end)
                        .values_list("util_samples", flat=True))


@pytest.mark.parametrize("days", [1, 7, 30])
def test_big_site_heatmap_from_node_blocks_equals_the_slow_way(world, monkeypatch, days) -> None:
    # given: a big site in miniature (row limit 3, 5 GPUs on 2 nodes) with 31 days of hourly rollups and blocks
    _, gpus = _two_nodes(world)
    first = DAY0 - dt.timedelta(days=28)
    for i, g in enumerate(g for group in gpus.values() for g in group):
        seed.hourly_uneven(g, first, 24 * 31 + 12, phase=i)
    rollups.gpu_util_rollup_compute(start=first, end=NOW)
    monkeypatch.setattr(gpu_selectors, "HEATMAP_MAX_ROWS", 3)
    monkeypatch.setattr(gpu_selectors, "HEATMAP_MAX_CELLS", 2 * 30)  # 30 columns: 1 h, 6 h and 1 d columns
    # when
    heatmap = gpu_selectors.site_gpu_heatmap_binned(user=world.users["viewer"], site=world.site_a,
                                                    start=NOW - dt.timedelta(days=days), end=NOW, now=NOW)
    # then: each node cell is the sample-weighted mean of its GPUs' hourly rollups
    assert heatmap["rows"] == "node"
    assert heatmap["step"] == {1: dt.timedelta(hours=1), 7: dt.timedelta(hours=6), 30: dt.timedelta(days=1)}[days]
    for r, node_id in enumerate(gpus):
        ids = [g.pk for g in gpus[node_id]]
        for c, col in enumerate(heatmap["columns"]):
            expected = seed.util_mean_slow(ids, col, col + heatmap["step"])
            assert heatmap["util_pct"][r][c] == (pytest.approx(expected) if expected is not None else None)


def test_big_site_heatmap_shows_a_new_reading_on_the_next_refresh(world, monkeypatch) -> None:
    # given: a node-row heatmap read once (settled pieces cached)
    _two_nodes(world)
    monkeypatch.setattr(gpu_selectors, "HEATMAP_MAX_ROWS", 3)
    hour = NOW.replace(minute=0, second=0)
    seed.hourly_uneven(world.gpu_a, hour - dt.timedelta(hours=30), 30)
    rollups.gpu_util_rollup_compute(start=hour - dt.timedelta(hours=30), end=NOW)
    user, start = world.users["viewer"], NOW - dt.timedelta(hours=24)
    before = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=start, end=NOW, now=NOW)
    assert before["util_pct"][0][-1] is None  # the hour in progress has not rolled up yet
    # when: minutes of the hour in progress roll up (as the periodic run does: minutes → hour → blocks)
    seed.gpu_rollups(gpu=world.gpu_a, start=hour, count=10, util=77.0, model=rollups.GpuRollup1m,
                     step=dt.timedelta(minutes=1))
    rollups.gpu_rollup_1h_compute(start=hour, end=NOW)
    after = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=start, end=NOW, now=NOW)
    # then
    assert after["util_pct"][0][-1] == 77.0
    assert after["util_pct"][0][:-2] == before["util_pct"][0][:-2]


def test_history_without_blocks_is_backfilled_one_day_per_run_newest_first(world) -> None:
    # given: three days of hourly rollups from before the blocks existed (none computed)
    _, gpus = _two_nodes(world)
    for i, g in enumerate(g for group in gpus.values() for g in group):
        seed.hourly_uneven(g, DAY0, 72 + 12, phase=i)
    rollups.gpu_util_rollup_compute(start=DAY0, end=NOW)
    expected_gpu, expected_node = _blocks(GpuUtilRollup), _blocks(NodeUtilRollup)
    GpuUtilRollup.objects.all().delete()
    NodeUtilRollup.objects.all().delete()
    # when: the backfill step runs until it says it is done, then twice more
    days = [rollups.gpu_util_rollup_backfill_step(now=NOW)["day"] for _ in range(6)]
    # then: today, then each day back to the oldest hourly rollup; then nothing (done for good)
    assert days == [dt.date(2026, 5, 4), dt.date(2026, 5, 3), dt.date(2026, 5, 2), dt.date(2026, 5, 1), None, None]
    assert RollupWatermark.objects.get(name=rollups.BACKFILL_WATERMARK).done_until == rollups.BACKFILL_DONE
    assert [(*k, pytest.approx(m)) for *k, m in _blocks(GpuUtilRollup)] == expected_gpu
    assert [(*k, pytest.approx(m)) for *k, m in _blocks(NodeUtilRollup)] == expected_node


def test_rollup_run_backfills_and_a_fresh_install_finishes_at_once(world) -> None:
    # given: no hourly rollups at all (a fresh install)
    # when
    result = rollups.gpu_util_rollup_backfill_step(now=NOW)
    again = rollups.gpu_util_rollup_backfill_step(now=NOW)
    # then: nothing to fill, and it is marked done
    assert result["day"] is None and again["day"] is None
    assert RollupWatermark.objects.get(name=rollups.BACKFILL_WATERMARK).done_until == rollups.BACKFILL_DONE


def test_retention_prunes_blocks_with_the_hourly_rollups_horizon(world) -> None:
    # given: blocks of three days, then the hourly rollups of the first day pruned (their horizon moved)
    _, gpus = _two_nodes(world)
    for i, g in enumerate(g for group in gpus.values() for g in group):
        seed.hourly_uneven(g, DAY0, 72, phase=i)
    rollups.gpu_util_rollup_compute(start=DAY0, end=DAY0 + dt.timedelta(days=3))
    GpuRollup1h.objects.filter(bucket__lt=DAY0 + dt.timedelta(days=1)).delete()
    # when: retention runs, twice
    first = retention.gpu_util_rollup_retention_apply()
    second = retention.gpu_util_rollup_retention_apply()
    # then: the first day's blocks are gone (5 GPUs × (4 + 1), 2 nodes × (24 + 4 + 1)) and the site's vectors of
    # them (GPU rows: 24 + 4 + 1), the rest kept
    assert first == {"gpu_blocks_deleted": 5 * 5, "node_blocks_deleted": 2 * 29, "site_vectors_deleted": 29}
    assert second == {"gpu_blocks_deleted": 0, "node_blocks_deleted": 0, "site_vectors_deleted": 0}
    assert not GpuUtilRollup.objects.filter(bucket__lt=DAY0 + dt.timedelta(days=1)).exists()
    assert NodeUtilRollup.objects.filter(span_h=24).count() == 2 * 2


def test_retention_keeps_everything_while_hourly_rollups_are_kept(world) -> None:
    # given
    seed.hourly_uneven(world.gpu_a, DAY0, 48)
    rollups.gpu_util_rollup_compute(start=DAY0, end=DAY0 + dt.timedelta(days=2))
    count = GpuUtilRollup.objects.count() + NodeUtilRollup.objects.count()
    # when
    result = retention.gpu_util_rollup_retention_apply()
    # then
    assert result == {"gpu_blocks_deleted": 0, "node_blocks_deleted": 0, "site_vectors_deleted": 0}
    assert GpuUtilRollup.objects.count() + NodeUtilRollup.objects.count() == count


def _fleet(world, count: int) -> list:
    """`count` healthy nodes (seen just now, one online GPU each) on site A besides node_a."""
    nodes = []
    for i in range(count):
        node = factories.NodeFactory(site=world.site_a, hostname=f"host-{i:02d}", status=NodeStatus.ONLINE,
                                     last_seen_at=NOW)
        factories.GpuFactory(node=node, index=0, last_seen_at=NOW)
        nodes.append(node)
    return nodes


def _node_table(html: str) -> str:
    start = html.index('id="nodes"')
    return html[start:html.index("</section>", start)]


def test_node_table_lists_every_problem_node_and_pages_the_healthy_ones(world, client_for, monkeypatch) -> None:
    # given: 8 healthy nodes and a stale one sorting last ("zz-"), with room for 3 rows
    monkeypatch.setattr(telemetry_views, "NODE_TABLE_ROWS", 3)
    world.node_a.last_seen_at = NOW
    world.node_a.status = NodeStatus.ONLINE
    world.node_a.save()
    world.gpu_a.last_seen_at = NOW
    world.gpu_a.save()
    healthy = _fleet(world, 8)
    stale = factories.NodeFactory(site=world.site_a, hostname="zz-stale", status=NodeStatus.STALE,
                                  last_seen_at=NOW - dt.timedelta(hours=2))
    client = client_for("viewer")
    # when
    html = client.get(reverse("sites:site_detail", args=[world.site_a.slug])).content.decode()
    page = _node_table(html)
    live = client.get(reverse("sites:site_data", args=[world.site_a.slug])).json()
    html_all = client.get(reverse("sites:site_detail", args=[world.site_a.slug]) + "?nodes=all").content.decode()
    everything = _node_table(html_all)
    live_all = client.get(reverse("sites:site_data", args=[world.site_a.slug]) + "?nodes=all").json()
    # then: the stale node is listed first, greyed, refreshed live and alerted; healthy ones fill the other rows
    assert "zz-stale" in page and f'data-live="node-{stale.pk}-age" class="is-stale"' in page
    assert page.index("zz-stale") < page.index("host-00")
    assert "Showing 3 of 10 nodes" in page and "nodes=all" in page
    assert "host-00" in page and "host-01" in page and "host-02" not in page
    assert f"node-{stale.pk}-age" in live["fields"] and f"node-{stale.pk}-age" in live["stale"]
    assert f"node-{healthy[0].pk}-age" in live["fields"] and f"node-{healthy[5].pk}-age" not in live["fields"]
    assert any("zz-stale" in a["text"] for a in live["alerts"])
    # and "show all nodes" lists (and refreshes) every one
    assert all(n.hostname in everything for n in healthy) and "Showing" not in everything
    assert f"{reverse('sites:site_data', args=[world.site_a.slug])}?nodes=all" in html_all
    assert all(f"node-{n.pk}-age" in live_all["fields"] for n in [*healthy, stale])


def test_node_turning_stale_beyond_the_first_page_shows_on_the_next_refresh(world, client_for, monkeypatch) -> None:
    # given: 6 healthy nodes, room for 2 rows: host-05 is not listed
    monkeypatch.setattr(telemetry_views, "NODE_TABLE_ROWS", 2)
    nodes = _fleet(world, 6)
    client = client_for("viewer")
    url = reverse("sites:site_data", args=[world.site_a.slug])
    assert f"node-{nodes[5].pk}-age" not in client.get(url).json()["fields"]
    # when: it stops reporting and the staleness task marks it
    nodes[5].last_seen_at = NOW - dt.timedelta(minutes=10)
    nodes[5].status = NodeStatus.STALE
    nodes[5].save()
    data = client.get(url).json()
    page = _node_table(client.get(reverse("sites:site_detail", args=[world.site_a.slug])).content.decode())
    # then: the next refresh alerts it and carries its cells; the page lists it
    assert any("host-05" in a["text"] for a in data["alerts"])
    assert f"node-{nodes[5].pk}-age" in data["stale"]
    assert "host-05" in page
