"""The sites' utilization vectors (`SiteUtilVector`): one row per site and block holding every GPU's (or node's)
figures, written with the blocks, read by a cold heatmap instead of one row per GPU and block — with the same
result, falling back to the blocks wherever a vector is missing, and filled for history by a backfill step."""

from __future__ import annotations

import datetime as dt
import sys
from array import array

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from telemetry import gpu_selectors, rollups
from telemetry.models import GpuRollup1h, GpuUtilRollup, NodeUtilRollup, RollupWatermark, SiteUtilVector
from tests import factories
from tests.telemetry import dash_support as seed
from tests.telemetry.dash_support import DAY0, NOW, frozen_now  # noqa: F401 - a fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_now")]
FIRST = DAY0 - dt.timedelta(days=28)


def _unpack(blob, code: str) -> list:
    values = array(code, bytes(blob))
    if sys.byteorder == "little":
        values.byteswap()
    return values.tolist()


def _fleet(world) -> dict[int, list]:
    """Site A with 5 GPUs on 2 nodes and 31 days of uneven hourly rollups (some hours without utilization), blocks
    and vectors computed as the rollup service does."""
    node_b = factories.NodeFactory(site=world.site_a, hostname="zz-node")
    gpus = {world.node_a.pk: [world.gpu_a, factories.GpuFactory(node=world.node_a, index=1)],
            node_b.pk: [factories.GpuFactory(node=node_b, index=i) for i in range(3)]}
    for i, g in enumerate(g for group in gpus.values() for g in group):
        seed.hourly_uneven(g, FIRST, 24 * 31 + 12, phase=i)
    return gpus


def _heatmap(world, days: float) -> dict:
    cache.clear()
    return gpu_selectors.site_gpu_heatmap_binned(user=world.users["viewer"], site=world.site_a,
                                                 start=NOW - dt.timedelta(days=days), end=NOW, now=NOW)


def test_a_vector_holds_each_gpus_block_and_leaves_out_gpus_without_utilization(world) -> None:
    # given
    gpus = _fleet(world)
    # when
    rollups.gpu_util_rollup_compute(start=FIRST, end=NOW)
    # then: per hour, the GPUs that had utilization samples, ordered by id, with Σ util × samples and Σ samples
    hour = FIRST + dt.timedelta(hours=5)  # the first GPU's hour without utilization
    vector = SiteUtilVector.objects.get(site=world.site_a, rows="gpu", span_h=1, bucket=hour)
    expected = sorted((r.gpu_id, r.util_mean_pct * r.util_samples, r.util_samples)
                      for r in GpuRollup1h.objects.filter(bucket=hour, util_samples__gt=0))
    assert len(expected) < 5  # one GPU had no utilization that hour
    got = list(zip(_unpack(vector.ids, "i"), _unpack(vector.weighted, "d"), _unpack(vector.samples, "i"),
                   strict=True))
    assert got == expected
    day = SiteUtilVector.objects.get(site=world.site_a, rows="gpu", span_h=24, bucket=DAY0)
    blocks = GpuUtilRollup.objects.filter(span_h=24, bucket=DAY0).order_by("gpu_id")
    assert _unpack(day.ids, "i") == [b.gpu_id for b in blocks]
    assert _unpack(day.samples, "i") == [b.util_samples for b in blocks]
    assert sorted(_unpack(day.ids, "i")) == sorted(g.pk for group in gpus.values() for g in group)
    # and: 31 days and 12 hours of 1-hour, 6-hour and 1-day vectors, for site A only (site B had no readings)
    assert set(SiteUtilVector.objects.values_list("site_id", flat=True)) == {world.site_a.pk}
    assert SiteUtilVector.objects.filter(span_h=1).count() == 24 * 31 + 12
    assert SiteUtilVector.objects.filter(span_h=6).count() == 4 * 31 + 2
    assert SiteUtilVector.objects.filter(span_h=24).count() == 32


def test_recomputing_changes_nothing(world) -> None:
    # given
    _fleet(world)
    rollups.gpu_util_rollup_compute(start=FIRST, end=NOW)
    before = list(SiteUtilVector.objects.values_list("rows", "span_h", "bucket", "ids", "weighted", "samples"))
    # when
    rollups.gpu_util_rollup_compute(start=FIRST, end=NOW)
    # then
    after = list(SiteUtilVector.objects.values_list("rows", "span_h", "bucket", "ids", "weighted", "samples"))
    assert [(*r[:3], *map(bytes, r[3:])) for r in before] == [(*r[:3], *map(bytes, r[3:])) for r in after]


def _reads(queries, *tables: str) -> int:
    return sum(any(t in q["sql"] for t in tables) for q in queries.captured_queries)


BLOCK_TABLES = ("telemetry_gpuutilrollup", "telemetry_gpurollup1h", "telemetry_nodeutilrollup")


@pytest.mark.parametrize("days", [1, 3, 7, 13.3, 30])  # 30 columns: 1 h, 3 h (of hours), 6 h, 12 h (of 6 h), 1 day
def test_cold_heatmap_from_vectors_equals_the_one_from_blocks_and_reads_no_block(world, monkeypatch, days) -> None:
    # given
    gpus = _fleet(world)
    rollups.gpu_util_rollup_compute(start=FIRST, end=NOW)
    monkeypatch.setattr(gpu_selectors, "HEATMAP_MAX_CELLS", 5 * 30)
    # when: cold, with the vectors
    with CaptureQueriesContext(connection) as queries:
        from_vectors = _heatmap(world, days)
    # then: the settled part came from the vectors; only the unsettled tail read the blocks ...
    assert _reads(queries, "telemetry_siteutilvector") == 1 and _reads(queries, *BLOCK_TABLES) == 1
    assert from_vectors["step"] == dt.timedelta(hours={1: 1, 3: 3, 7: 6, 13.3: 12, 30: 24}[days])
    # ... and it is the heatmap the blocks give, cell for cell
    SiteUtilVector.objects.all().delete()
    from_blocks = _heatmap(world, days)
    assert from_vectors == from_blocks
    # and each cell is the sample-weighted mean of the GPU's hourly rollups
    ids = [g.pk for group in gpus.values() for g in group]
    for r, gpu_id in enumerate(from_vectors["gpu_ids"]):
        for c, col in enumerate(from_vectors["columns"][:-1]):
            expected = seed.util_mean_slow([gpu_id], col, col + from_vectors["step"])
            assert from_vectors["util_pct"][r][c] == (pytest.approx(expected) if expected is not None else None)
    assert sorted(from_vectors["gpu_ids"]) == sorted(ids)


@pytest.mark.parametrize("row_limit", [3, 1])  # a row per node; bins of nodes
def test_big_site_cold_heatmap_from_node_vectors_equals_the_one_from_node_blocks(world, monkeypatch, row_limit) -> None:
    # given: a big site in miniature: rows are nodes (or bins of nodes), and the vectors are node vectors
    _fleet(world)
    monkeypatch.setattr(gpu_selectors, "HEATMAP_MAX_ROWS", row_limit)
    monkeypatch.setattr(rollups, "HEATMAP_MAX_ROWS", row_limit)
    rollups.gpu_util_rollup_compute(start=FIRST, end=NOW)
    assert set(SiteUtilVector.objects.values_list("rows", flat=True)) == {"node"}
    # when: cold heatmaps with the vectors, then with the node blocks alone
    with CaptureQueriesContext(connection) as queries:
        from_vectors = [_heatmap(world, days) for days in (1, 7, 30)]
    monkeypatch.setattr(gpu_selectors, "_heatmap_vectors", lambda *a, missing, **k: missing)
    from_blocks = [_heatmap(world, days) for days in (1, 7, 30)]
    # then: per heatmap, the vectors for the settled part and the node blocks for the unsettled tail only
    assert _reads(queries, "telemetry_siteutilvector") == 3 and _reads(queries, *BLOCK_TABLES) == 3
    assert {h["rows"] for h in from_vectors} == {"node" if row_limit == 3 else "nodes"}
    assert from_vectors == from_blocks


def test_a_site_that_outgrows_gpu_rows_keeps_no_stale_gpu_vector_of_the_blocks_recomputed(world, monkeypatch) -> None:
    # given: GPU vectors of three days
    for i in range(3):
        seed.hourly_uneven(factories.GpuFactory(node=world.node_a, index=i + 1), DAY0, 72 + 12, phase=i)
    rollups.gpu_util_rollup_compute(start=DAY0, end=NOW)
    assert set(SiteUtilVector.objects.values_list("rows", flat=True)) == {"gpu"}
    # when: the site passes the row limit and today's blocks are recomputed
    monkeypatch.setattr(rollups, "HEATMAP_MAX_ROWS", 2)
    today = NOW.replace(hour=0, minute=0, second=0)
    rollups.gpu_util_rollup_compute(start=today, end=NOW)
    # then: today has node vectors only; earlier days keep their (complete) GPU vectors
    assert set(SiteUtilVector.objects.filter(bucket__gte=today).values_list("rows", flat=True)) == {"node"}
    assert SiteUtilVector.objects.filter(rows="gpu", span_h=24).count() == 3


def test_a_missing_vector_is_read_from_the_blocks(world, monkeypatch) -> None:
    # given: vectors, then one settled day's 1-day vector lost (not yet backfilled)
    _fleet(world)
    rollups.gpu_util_rollup_compute(start=FIRST, end=NOW)
    monkeypatch.setattr(gpu_selectors, "HEATMAP_MAX_CELLS", 5 * 30)  # day columns
    expected = _heatmap(world, 30)
    SiteUtilVector.objects.filter(span_h=24, bucket=DAY0 - dt.timedelta(days=10)).delete()
    # when
    with CaptureQueriesContext(connection) as queries:
        heatmap = _heatmap(world, 30)
    # then: the same heatmap; the blocks were read for that day (and the unsettled tail) only
    assert heatmap == expected
    day_reads = [q["sql"] for q in queries.captured_queries if "telemetry_gpuutilrollup" in q["sql"]]
    assert len(day_reads) == 2
    assert any(f"'{(DAY0 - dt.timedelta(days=10)):%Y-%m-%d %H:%M:%S}" in sql for sql in day_reads)


def test_a_new_reading_reaches_the_vector_of_its_hour_with_the_blocks(world) -> None:
    # given
    hour = NOW.replace(minute=0, second=0)
    seed.gpu_rollups(gpu=world.gpu_a, start=hour, count=10, util=77.0, model=rollups.GpuRollup1m,
                     step=dt.timedelta(minutes=1))
    # when: the periodic run rolls minutes into the hour, the blocks and the vectors
    rollups.gpu_rollup_1h_compute(start=hour, end=NOW)
    # then
    vector = SiteUtilVector.objects.get(site=world.site_a, rows="gpu", span_h=1, bucket=hour)
    assert _unpack(vector.ids, "i") == [world.gpu_a.pk]
    assert _unpack(vector.weighted, "d") == [77.0 * _unpack(vector.samples, "i")[0]]


def test_history_without_vectors_is_backfilled_one_day_per_run_newest_first(world) -> None:
    # given: blocks of three days and a half from before the vectors existed (blocks backfill already done)
    for i in range(3):
        seed.hourly_uneven(factories.GpuFactory(node=world.node_a, index=i + 1), DAY0, 72 + 12, phase=i)
    rollups.gpu_util_rollup_compute(start=DAY0, end=NOW)
    expected = list(SiteUtilVector.objects.values_list("span_h", "bucket", "ids", "weighted", "samples"))
    SiteUtilVector.objects.all().delete()
    blocks = GpuUtilRollup.objects.count() + NodeUtilRollup.objects.count()
    # when: the vector backfill runs until it says it is done, then twice more
    days = [rollups.site_util_vectors_backfill_step(now=NOW)["day"] for _ in range(6)]
    # then: today, then each day back to the oldest hourly rollup; then nothing; the blocks were not touched
    assert days == [dt.date(2026, 5, 4), dt.date(2026, 5, 3), dt.date(2026, 5, 2), dt.date(2026, 5, 1), None, None]
    assert RollupWatermark.objects.get(name=rollups.VECTORS_BACKFILL_WATERMARK).done_until == rollups.BACKFILL_DONE
    got = list(SiteUtilVector.objects.values_list("span_h", "bucket", "ids", "weighted", "samples"))
    assert sorted((s, b, *map(bytes, rest)) for s, b, *rest in got) == sorted(
        (s, b, *map(bytes, rest)) for s, b, *rest in expected)
    assert GpuUtilRollup.objects.count() + NodeUtilRollup.objects.count() == blocks


def test_the_periodic_rollup_run_backfills_vectors(world) -> None:
    # given: hourly rollups of yesterday whose vectors are missing, and a rollup watermark minutes old
    seed.hourly_uneven(world.gpu_a, NOW.replace(hour=0, minute=0, second=0) - dt.timedelta(days=1), 24)
    RollupWatermark.objects.create(name=rollups.WATERMARK, done_until=NOW - dt.timedelta(minutes=5))
    # when
    result = rollups.gpu_rollups_run(now=NOW)
    # then: the run's backfill steps did today first (blocks and vectors alike)
    assert result["blocks_backfilled"] == result["vectors_backfilled"] == NOW.date()
