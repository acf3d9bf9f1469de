"""Fourth dashboard round: the heatmap's settled matrix and its pre-warm, and the inventory read once per request.

Each fast path is compared with the slow way (row by row, or the function it replaces) on small fixtures; the
pre-warm is run twice (idempotent) against a cache shared between processes (Django's file-based cache, real files),
and never lets one partner read another's figures.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache, caches
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from sites.compliance import site_compliance
from sites.dashboard import gpu_inventory, gpu_version_groups, grouped_site_compliance, node_gpu_states, site_cards
from sites.models import Node, ServingEndpoint, Site
from telemetry import gpu_selectors, rollups
from telemetry.tasks.dashboards import site_heatmaps_warm_task
from telemetry.views import _site_tables, site_table_fields
from tests import factories
from tests.telemetry import dash_support as seed
from tests.telemetry.dash_support import DAY0, NOW, frozen_now  # noqa: F401 - a fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_now")]


@pytest.fixture
def shared_cache(tmp_path):
    """A cache shared by processes (files), as Redis would be in production: what the pre-warm needs."""
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                                               "LOCATION": str(tmp_path / "cache")}}):
        caches["default"].clear()
        yield caches["default"]
        caches["default"].clear()


def _three_gpus_of_history(world) -> list:
    gpus = [world.gpu_a, factories.GpuFactory(node=world.node_a, index=1),
            factories.GpuFactory(node=factories.NodeFactory(site=world.site_a, hostname="zz-<i>node</i>"), index=0)]
    for i, g in enumerate(gpus):
        seed.hourly_uneven(g, DAY0 - dt.timedelta(days=27), 24 * 30 + 12, phase=i)
    rollups.gpu_util_rollup_compute(start=DAY0 - dt.timedelta(days=27), end=NOW)
    return gpus


def _slow(heatmap: dict, rows: list[list[int]]) -> list[list[float | None]]:
    return [[seed.util_mean_slow(ids, col, col + heatmap["step"]) for col in heatmap["columns"]] for ids in rows]


@pytest.mark.parametrize("span", [dt.timedelta(hours=24), dt.timedelta(days=7), dt.timedelta(days=30)])
def test_heatmap_from_the_cached_matrix_equals_the_slow_way(world, span) -> None:
    # given: three GPUs with 30 days of uneven hourly rollups and their blocks
    gpus = _three_gpus_of_history(world)
    user, start = world.users["viewer"], NOW - span
    # when: read cold (pieces and the settled matrix cached), warm (from the matrix), and from pieces only
    cold = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=start, end=NOW, now=NOW)
    with CaptureQueriesContext(connection) as warm_queries:
        warm = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=start, end=NOW, now=NOW)
    # Drop the matrices, keep the pieces (local-memory keys are stored as ":<version>:<key>").
    cache.delete_many([k.removeprefix(":1:") for k in list(cache._cache) if ":m:" in k])  # noqa: SLF001
    pieces = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=start, end=NOW, now=NOW)
    # then: every cell is the sample-weighted mean of the hourly rollups it covers, whichever path served it
    assert sorted(cold["gpu_ids"]) == sorted(g.pk for g in gpus)
    expected = _slow(cold, [[pk] for pk in cold["gpu_ids"]])
    for heatmap in (cold, warm, pieces):
        assert [[pytest.approx(v) if v is not None else None for v in row] for row in expected] == heatmap["util_pct"]
    # and a warm read does not read the settled range: node list, GPU list, the unsettled tail
    assert len(warm_queries.captured_queries) <= 4


def test_matrix_cache_shows_a_new_rollup_on_the_next_refresh(world) -> None:
    # given: a 7-day heatmap read once (the settled matrix cached)
    _three_gpus_of_history(world)
    user, start = world.users["viewer"], NOW - dt.timedelta(days=7)
    first = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=start, end=NOW, now=NOW)
    row = first["gpu_ids"].index(world.gpu_a.pk)
    assert first["util_pct"][row][-1] is None  # the hour in progress has not rolled up yet
    # when: the hour in progress rolls up (its blocks too, as every rollup run does)
    hour = NOW.replace(minute=0, second=0)
    seed.gpu_rollups(gpu=world.gpu_a, start=hour, count=1, util=99.0)
    rollups.gpu_util_rollup_compute(start=hour, end=NOW)
    second = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=start, end=NOW, now=NOW)
    # then: the last column (in progress, read live) changed; the settled ones did not
    assert second["util_pct"][row][-1] == 99.0 == pytest.approx(seed.util_mean_slow(
        [world.gpu_a.pk], second["columns"][-1], second["columns"][-1] + second["step"]))
    assert second["util_pct"][row][:-1] == first["util_pct"][row][:-1]


def test_prewarm_fills_what_users_read_and_running_it_twice_changes_nothing(world, shared_cache) -> None:
    # given: history on site A (partner A) and on site B (partner B)
    _three_gpus_of_history(world)
    seed.hourly_uneven(world.gpu_b, DAY0, 72)
    rollups.gpu_util_rollup_compute(start=DAY0, end=NOW)
    # when: the pre-warm task runs twice, as beat would
    first = site_heatmaps_warm_task()
    keys_first = sorted(shared_cache._list_cache_files())  # noqa: SLF001
    second = site_heatmaps_warm_task()
    keys_second = sorted(shared_cache._list_cache_files())  # noqa: SLF001
    # then: both sites × 3 ranges × (now, now + ahead), and the second run wrote no new keys
    assert first == second == {"warmed": 2 * 3 * 2}
    assert keys_first == keys_second
    # and a user's request after the warm reads no settled range (node list, GPU list, the unsettled tail)
    for span in gpu_selectors.WARM_RANGES:
        user = world.users["viewer"]
        with CaptureQueriesContext(connection) as queries:
            warm = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=NOW - span, end=NOW,
                                                         now=NOW)
        assert len(queries.captured_queries) <= 4, span
        shared_cache.clear()
        cold = gpu_selectors.site_gpu_heatmap_binned(user=user, site=world.site_a, start=NOW - span, end=NOW,
                                                     now=NOW)
        assert warm["util_pct"] == cold["util_pct"]
        site_heatmaps_warm_task()


def test_prewarmed_heatmap_never_reaches_another_partner(world, shared_cache, client_for) -> None:
    # given: both partners' sites warmed
    _three_gpus_of_history(world)
    seed.hourly_uneven(world.gpu_b, DAY0, 72)
    rollups.gpu_util_rollup_compute(start=DAY0, end=NOW)
    site_heatmaps_warm_task()
    # when: partner B's member asks for site A's heatmap (and its own)
    outsider = client_for("outsider")
    theirs = outsider.get(reverse("sites:site_chart", args=[world.site_a.slug, "heatmap"]) + "?range=7d")
    own = outsider.get(reverse("sites:site_chart", args=[world.site_b.slug, "heatmap"]) + "?range=7d").json()
    # then: 404 for site A; its own heatmap names only its own GPU, with its own figures
    assert theirs.status_code == 404
    assert own["data"][0]["y"] == [f"{world.node_b.hostname}/gpu{world.gpu_b.index}"]
    assert "zz-&lt;i&gt;node&lt;/i&gt;" not in str(own) and world.node_a.hostname not in str(own)


def test_prewarm_is_skipped_with_a_per_process_cache(world) -> None:
    # given: the default local-memory cache (a worker's memory, which no web process reads)
    _three_gpus_of_history(world)
    # when
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}), \
            CaptureQueriesContext(connection) as queries:
        result = site_heatmaps_warm_task()
    # then: nothing read, nothing cached
    assert result == {"warmed": 0, "skipped": "the cache is per process"}
    assert queries.captured_queries == []


def test_gpu_inventory_equals_states_and_version_groups_apart(world) -> None:
    # given: GPUs with several versions (one reporting none) and states on two nodes
    node_2 = factories.NodeFactory(site=world.site_a)
    for i, (driver, cuda, seen, util, power) in enumerate([
            ("570.133.20", "12.8", 5, 40, 300.0), ("570.133.20", "12.8", 500, 99, 999.0),
            ("565.57.01", "12.8", 5, None, 200.0), ("", "", 5, 0, None), ("", "12.4", None, None, None)]):
        factories.GpuFactory(node=node_2 if i % 2 else world.node_a, index=i + 1, driver_version=driver,
                             cuda_driver_version=cuda, last_util_pct=util, last_power_w=power,
                             last_seen_at=None if seen is None else NOW - dt.timedelta(seconds=seen))
    factories.GpuFactory(node=world.node_b, last_seen_at=NOW, last_util_pct=77, last_power_w=700.0)
    user, sites = world.users["operator"], list(Site.objects.all())
    # when
    states, versions, latest = gpu_inventory(user=user, sites=sites, now=NOW)
    # then: as the three grouped queries it replaces
    assert states == node_gpu_states(user=user, sites=sites, now=NOW)
    assert versions == gpu_version_groups(user=user, site_ids=[s.pk for s in sites])
    assert latest == gpu_selectors.sites_gpu_now(user=user, sites=sites, now=NOW)
    assert latest[world.site_a.pk]["gpus_reporting"] == 3 and latest[world.site_a.pk]["power_w"] == 500.0
    assert latest[world.site_a.pk]["util_mean_pct"] == 20  # (40 + 0) / 2: the GPU without utilization left out
    assert world.site_b.pk not in states and world.site_b.pk not in versions and world.site_b.pk not in latest


def test_nodes_checked_per_version_pair_count_as_every_node(world) -> None:
    # given: a baseline and 12 nodes: 9 compliant, 2 drifting, 1 reporting nothing
    site = world.site_a
    site.baseline_driver_version, site.baseline_cuda_version = "570.133", "12.8"
    site.save()
    for i in range(12):
        driver = "565.57.01" if i in (3, 7) else "" if i == 5 else "570.133.20"
        factories.NodeFactory(site=site, hostname=f"n-{i:02d}", driver_version=driver, cuda_driver_version="12.8")
    nodes = list(Node.objects.filter(site=site).order_by("hostname"))
    endpoints = list(ServingEndpoint.objects.filter(site=site))
    # when
    fast = grouped_site_compliance(site=site, nodes=nodes, endpoints=endpoints, gpu_groups=[])
    slow = site_compliance(site=site, nodes=nodes, gpus=[], endpoints=endpoints)
    # then: the same counts, and the same drifting items (each node by hostname, in order)
    assert (fast.ok, fast.drift, fast.unknown) == (slow.ok, slow.drift, slow.unknown)
    assert [(i.kind, i.label, i.state) for i in fast.drifting_items] == [
        (i.kind, i.label, i.state) for i in slow.drifting_items]
    assert sum(1 for i in fast.items if i.kind == "node") < len(nodes)  # compliant nodes grouped


def test_site_tables_from_the_card_equal_the_tables_read_again(world) -> None:
    # given: a site with healthy, stale and skewed nodes, and usage in the last minutes
    for i in range(4):
        node = factories.NodeFactory(site=world.site_a, hostname=f"h-{i}", last_seen_at=NOW - dt.timedelta(
            seconds=5 if i % 2 else 600), clock_offset_s=30.0 if i == 3 else 0.2)
        factories.GpuFactory(node=node, last_seen_at=node.last_seen_at)
    seed.usage(endpoint=world.endpoint_a, model="m", end=NOW - dt.timedelta(seconds=20), seconds=15, prompt=1500,
               generation=3000, ttft=(1.5, 10))
    user = world.users["viewer"]
    card = site_cards(user=user, site=world.site_a, now=NOW)[0]
    # when
    fast = _site_tables(user=user, site=world.site_a, now=NOW, card=card)
    slow = _site_tables(user=user, site=world.site_a, now=NOW)
    fast_fields = site_table_fields(user=user, site=world.site_a, now=NOW, card=card)
    slow_fields = site_table_fields(user=user, site=world.site_a, now=NOW)

    # then: the same rows (node objects compared by what the table shows) and the same live fields
    def shown(tables):
        return ([(r["node"].pk, r["node"].hostname, r["node"].status, r["gpus"], r["online"], r["stale"], r["age"],
                  r["clock"], r["clock_skewed"]) for r in tables["node_rows"]],
                [(r["endpoint"].pk, r["tokens"], r["ttft"], r["itl"], r["stale"]) for r in tables["endpoint_rows"]],
                tables["nodes_total"], tables["nodes_hidden"], tables["heatmap_note"])

    assert shown(fast) == shown(slow)
    assert fast_fields == slow_fields
    assert any(r["tokens"] != "no recent scrape" for r in fast["endpoint_rows"])
