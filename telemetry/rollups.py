"""GPU rollups: raw samples → per-GPU 1-minute → per-GPU 1-hour and per-site 1-minute.

Energy (DESIGN.md §5.1, §5.3): each sample's energy is the counter delta since the GPU's previous sample,
`cur − prev`, or `cur` when the counter went backwards (driver reload: the counter restarts at 0); the
delta is attributed to the bucket of the later sample. Summing buckets over [a, b) therefore gives exactly
the counter difference between the last samples before a and before b, through missed polls and resets.
A GPU without a counter gets the trapezoid of its power between consecutive samples, marked estimated;
gaps longer than `MAX_INTEGRATION_GAP_S` are not integrated (nobody knows what happened there).

Every function recomputes whole buckets from their sources and upserts them, so running it twice, or
again after late data arrived, leaves the same rows.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Max

from sites.models import Gpu
from telemetry.models import (
    HEATMAP_MAX_ROWS,
    GpuRollup1h,
    GpuRollup1m,
    GpuSample,
    GpuUtilRollup,
    NodeUtilRollup,
    RollupWatermark,
    SiteGpuRollup1m,
    SiteUtilVector,
)

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
MAX_INTEGRATION_GAP_S = 300.0
# How far back the previous sample of a GPU is looked for when a range starts (exactness across
# missed polls holds for gaps up to this long).
PREVIOUS_SAMPLE_LOOKBACK = dt.timedelta(days=1)
# Late samples (agent buffers, slow ingest) inside this window are folded in by the next run.
REROLL_WINDOW = dt.timedelta(minutes=10)
# Buckets are closed this long after their end before they are first computed.
SETTLE = dt.timedelta(seconds=30)
# One run computes at most this much, so catch-up after downtime proceeds in bounded steps.
MAX_CATCHUP = dt.timedelta(hours=6)
MJ_PER_J = Decimal(1000)
J_QUANTUM = Decimal("0.001")

UPDATE_FIELDS = [
    "sample_count", "util_samples", "util_mean_pct", "util_max_pct", "power_samples", "power_mean_w",
    "power_max_w", "energy_j", "energy_estimated", "memory_used_max_bytes", "temperature_max_c", "computed_at",
]
SITE_UPDATE_FIELDS = [
    "gpu_count", "sample_count", "util_samples", "util_mean_pct", "util_max_pct", "power_mean_w", "power_max_w",
    "energy_j", "energy_estimated", "computed_at",
]


def floor_to(value: dt.datetime, step: dt.timedelta) -> dt.datetime:
    value = value.astimezone(dt.UTC)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + ((value - epoch) // step) * step


@dataclass
class _Acc:
    """Running aggregate of one (gpu, bucket)."""

    sample_count: int = 0
    util_sum: float = 0.0
    util_samples: int = 0
    util_max: int | None = None
    power_sum: float = 0.0
    power_samples: int = 0
    power_max: float | None = None
    energy_mj: int = 0
    energy_est_j: float = 0.0
    has_energy: bool = False
    estimated: bool = False
    memory_max: int | None = None
    temperature_max: int | None = None
    gpus: set[int] = field(default_factory=set)

    def energy_j(self) -> Decimal | None:
        if not self.has_energy:
            return None
        exact = Decimal(self.energy_mj) / MJ_PER_J
        return (exact + Decimal(repr(self.energy_est_j))).quantize(J_QUANTUM)


def _max(a, b):
    return b if a is None else (a if b is None else max(a, b))


def energy_delta(prev: tuple, cur: tuple) -> tuple[int | None, float | None]:
    """(exact mJ, estimated J) between two samples given as (ts, power_w, energy_mj)."""
    prev_ts, prev_power, prev_energy = prev
    ts, power, energy = cur
    if prev_energy is not None and energy is not None:
        return (energy - prev_energy if energy >= prev_energy else energy), None
    gap = (ts - prev_ts).total_seconds()
    if power is not None and prev_power is not None and 0 < gap <= MAX_INTEGRATION_GAP_S:
        return None, (prev_power + power) / 2 * gap
    return None, None


def _previous_samples(start: dt.datetime, gpu_ids: Iterable[int] | None) -> dict[int, tuple]:
    """Each GPU's last sample before `start` (within the lookback): the baseline of its first delta."""
    qs = GpuSample.objects.filter(ts__lt=start, ts__gte=start - PREVIOUS_SAMPLE_LOOKBACK)
    if gpu_ids is not None:
        qs = qs.filter(gpu_id__in=list(gpu_ids))
    latest = qs.values("gpu_id").annotate(last_ts=Max("ts"))
    keys = {row["gpu_id"]: row["last_ts"] for row in latest}
    if not keys:
        return {}
    rows = GpuSample.objects.filter(gpu_id__in=list(keys), ts__in=set(keys.values())).values_list(
        "gpu_id", "ts", "power_w", "energy_mj")
    return {gpu_id: (ts, power, energy) for gpu_id, ts, power, energy in rows if keys.get(gpu_id) == ts}


def _iter_samples(start: dt.datetime, end: dt.datetime, gpu_ids: Iterable[int] | None) -> Iterator[tuple]:
    qs = GpuSample.objects.filter(ts__gte=start, ts__lt=end)
    if gpu_ids is not None:
        qs = qs.filter(gpu_id__in=list(gpu_ids))
    yield from qs.order_by("gpu_id", "ts").values_list(
        "gpu_id", "ts", "util_pct", "power_w", "energy_mj", "memory_used_bytes", "temperature_c"
    ).iterator(chunk_size=20000)


def gpu_rollup_1m_compute(*, start: dt.datetime, end: dt.datetime, gpu_ids: Iterable[int] | None = None) -> int:
    """Recompute the per-GPU 1-minute rollups of [start, end) (floored to minutes); returns rows written."""
    start, end = floor_to(start, MINUTE), floor_to(end, MINUTE)
    if end <= start:
        return 0
    gpu_ids = list(gpu_ids) if gpu_ids is not None else None
    previous = _previous_samples(start, gpu_ids)
    accs: dict[tuple[int, dt.datetime], _Acc] = defaultdict(_Acc)
    for gpu_id, ts, util, power, energy, memory, temperature in _iter_samples(start, end, gpu_ids):
        acc = accs[(gpu_id, floor_to(ts, MINUTE))]
        acc.sample_count += 1
        if util is not None:
            acc.util_sum += util
            acc.util_samples += 1
            acc.util_max = _max(acc.util_max, util)
        if power is not None:
            acc.power_sum += power
            acc.power_samples += 1
            acc.power_max = _max(acc.power_max, power)
        acc.memory_max = _max(acc.memory_max, memory)
        acc.temperature_max = _max(acc.temperature_max, temperature)
        if energy is not None or power is not None:
            acc.has_energy = True
        prev = previous.get(gpu_id)
        if prev is not None:
            exact_mj, estimated_j = energy_delta(prev, (ts, power, energy))
            if exact_mj is not None:
                acc.energy_mj += exact_mj
            elif estimated_j is not None:
                acc.energy_est_j += estimated_j
                acc.estimated = True
        if energy is None and power is not None:
            acc.estimated = True
        previous[gpu_id] = (ts, power, energy)
    rows = [
        GpuRollup1m(
            gpu_id=gpu_id, bucket=bucket, sample_count=a.sample_count, util_samples=a.util_samples,
            util_mean_pct=a.util_sum / a.util_samples if a.util_samples else None, util_max_pct=a.util_max,
            power_samples=a.power_samples, power_mean_w=a.power_sum / a.power_samples if a.power_samples else None,
            power_max_w=a.power_max, energy_j=a.energy_j(), energy_estimated=a.estimated,
            memory_used_max_bytes=a.memory_max, temperature_max_c=a.temperature_max,
        )
        for (gpu_id, bucket), a in accs.items()
    ]
    GpuRollup1m.objects.bulk_create(rows, update_conflicts=True, unique_fields=["gpu", "bucket"],
                                    update_fields=UPDATE_FIELDS, batch_size=2000)
    return len(rows)


def _combine(accs: dict, key, r) -> None:
    """Fold a finer rollup row `r` into the coarser accumulator at `key`."""
    acc = accs[key]
    acc.sample_count += r.sample_count
    if r.util_samples:
        acc.util_sum += r.util_mean_pct * r.util_samples
        acc.util_samples += r.util_samples
        acc.util_max = _max(acc.util_max, r.util_max_pct)
    if r.power_samples:
        acc.power_sum += r.power_mean_w * r.power_samples
        acc.power_samples += r.power_samples
        acc.power_max = _max(acc.power_max, r.power_max_w)
    if r.energy_j is not None:
        acc.has_energy = True
        acc.energy_mj += int(r.energy_j * MJ_PER_J)  # energy_j has 3 decimals: exact in mJ
    acc.estimated = acc.estimated or r.energy_estimated
    acc.memory_max = _max(acc.memory_max, r.memory_used_max_bytes)
    acc.temperature_max = _max(acc.temperature_max, r.temperature_max_c)


def gpu_rollup_1h_compute(*, start: dt.datetime, end: dt.datetime) -> int:
    """Recompute the per-GPU 1-hour rollups of the hours touching [start, end) from 1-minute rollups."""
    start, end = floor_to(start, HOUR), floor_to(end - dt.timedelta(microseconds=1), HOUR) + HOUR
    accs: dict[tuple[int, dt.datetime], _Acc] = defaultdict(_Acc)
    for r in GpuRollup1m.objects.filter(bucket__gte=start, bucket__lt=end).iterator(chunk_size=20000):
        _combine(accs, (r.gpu_id, floor_to(r.bucket, HOUR)), r)
    rows = [
        GpuRollup1h(
            gpu_id=gpu_id, bucket=bucket, sample_count=a.sample_count, util_samples=a.util_samples,
            util_mean_pct=a.util_sum / a.util_samples if a.util_samples else None, util_max_pct=a.util_max,
            power_samples=a.power_samples, power_mean_w=a.power_sum / a.power_samples if a.power_samples else None,
            power_max_w=a.power_max, energy_j=a.energy_j(), energy_estimated=a.estimated,
            memory_used_max_bytes=a.memory_max, temperature_max_c=a.temperature_max,
        )
        for (gpu_id, bucket), a in accs.items()
    ]
    GpuRollup1h.objects.bulk_create(rows, update_conflicts=True, unique_fields=["gpu", "bucket"],
                                    update_fields=UPDATE_FIELDS, batch_size=2000)
    # The heatmap's 6-hour and 1-day blocks follow every hourly recompute (the block in progress included), so
    # every path that rolls up hours (the periodic run, the demo's back-fill) keeps them current.
    gpu_util_rollup_compute(start=start, end=end)
    return len(rows)


def site_rollup_1m_compute(*, start: dt.datetime, end: dt.datetime) -> int:
    """Recompute the per-site 1-minute rollups of [start, end) from the per-GPU 1-minute rollups."""
    start, end = floor_to(start, MINUTE), floor_to(end, MINUTE)
    site_of = dict(Gpu.objects.values_list("pk", "node__site_id"))
    accs: dict[tuple[int, dt.datetime], _Acc] = defaultdict(_Acc)
    power_mean_sum: dict[tuple[int, dt.datetime], float] = defaultdict(float)
    power_max_sum: dict[tuple[int, dt.datetime], float] = defaultdict(float)
    for r in GpuRollup1m.objects.filter(bucket__gte=start, bucket__lt=end).iterator(chunk_size=20000):
        key = (site_of[r.gpu_id], r.bucket)
        _combine(accs, key, r)
        accs[key].gpus.add(r.gpu_id)
        if r.power_mean_w is not None:
            power_mean_sum[key] += r.power_mean_w
            power_max_sum[key] += r.power_max_w
    rows = [
        SiteGpuRollup1m(
            site_id=site_id, bucket=bucket, gpu_count=len(a.gpus), sample_count=a.sample_count,
            util_samples=a.util_samples, util_mean_pct=a.util_sum / a.util_samples if a.util_samples else None,
            util_max_pct=a.util_max,
            power_mean_w=power_mean_sum[(site_id, bucket)] if a.power_samples else None,
            power_max_w=power_max_sum[(site_id, bucket)] if a.power_samples else None,
            energy_j=a.energy_j(), energy_estimated=a.estimated,
        )
        for (site_id, bucket), a in accs.items()
    ]
    SiteGpuRollup1m.objects.bulk_create(rows, update_conflicts=True, unique_fields=["site", "bucket"],
                                        update_fields=SITE_UPDATE_FIELDS, batch_size=2000)
    return len(rows)


# Utilization blocks for the heatmap: per GPU (`GpuUtilRollup`) 6-hour blocks from the hourly rollups and days from
# the 6-hour blocks; per node (`NodeUtilRollup`) hours from the GPUs' hourly rollups, 6-hour blocks from those hours
# and days from the 6-hour blocks. All align to midnight UTC.
UTIL_SPANS_H = (6, 24)
NODE_UTIL_SPANS_H = (1, 6, 24)
DAY = dt.timedelta(days=1)


def gpu_util_rollup_compute(*, start: dt.datetime, end: dt.datetime) -> int:
    """Recompute the utilization blocks touching [start, end) — per GPU 6 h and 1 day, per node 1 h, 6 h and 1 day
    (sample-weighted means of the hourly rollups) — and upsert them, then the sites' vectors of those blocks
    (`site_util_vectors_compute`); returns rows written. The block in progress is recomputed from what has rolled up
    so far, so a later run completes it."""
    written = 0
    for model, spans in ((GpuUtilRollup, UTIL_SPANS_H), (NodeUtilRollup, NODE_UTIL_SPANS_H)):
        for span_h in spans:
            step = dt.timedelta(hours=span_h)
            a, b = floor_to(start, step), floor_to(end - dt.timedelta(microseconds=1), step) + step
            if connection.vendor == "postgresql":
                written += _util_blocks_sql(model=model, span_h=span_h, start=a, end=b)
            else:
                written += _util_blocks_python(model=model, span_h=span_h, start=a, end=b)
    return written + site_util_vectors_compute(start=start, end=end)


# The blocks of each span packed per site (`SiteUtilVector`): GPU rows (from the hourly rollups for 1 h, the GPU
# blocks for 6 h and 1 day) for sites of up to HEATMAP_MAX_ROWS GPUs, node rows (the node blocks) beyond, as the
# heatmap shows them.
VECTOR_SPANS_H = (1, 6, 24)


def site_util_vectors_compute(*, start: dt.datetime, end: dt.datetime) -> int:
    """Recompute the sites' utilization vectors of every 1-hour, 6-hour and 1-day block touching [start, end) from
    the blocks already computed, and upsert them; returns rows written. PostgreSQL only (the packing is done by the
    database); elsewhere the heatmap reads the blocks themselves."""
    if connection.vendor != "postgresql":
        return 0
    gpu_counts = dict(Gpu.objects.values("node__site_id").annotate(n=Count("pk")).values_list("node__site_id", "n"))
    by_rows = {SiteUtilVector.Rows.GPU: sorted(i for i, n in gpu_counts.items() if n <= HEATMAP_MAX_ROWS),
               SiteUtilVector.Rows.NODE: sorted(i for i, n in gpu_counts.items() if n > HEATMAP_MAX_ROWS)}
    written = 0
    for rows, site_ids in by_rows.items():
        if not site_ids:
            continue
        for span_h in VECTOR_SPANS_H:
            step = dt.timedelta(hours=span_h)
            a, b = floor_to(start, step), floor_to(end - dt.timedelta(microseconds=1), step) + step
            written += _site_vectors_sql(rows=rows, span_h=span_h, site_ids=site_ids, start=a, end=b)
            # A site that crossed HEATMAP_MAX_ROWS keeps no vector of the other kind for these blocks: one written
            # before the crossing would stop being updated and be read, stale, should the site cross back.
            other = SiteUtilVector.Rows.NODE if rows == SiteUtilVector.Rows.GPU else SiteUtilVector.Rows.GPU
            SiteUtilVector.objects.filter(site_id__in=site_ids, rows=other, span_h=span_h, bucket__gte=a,
                                          bucket__lt=b).delete()
    return written


def _site_vectors_sql(*, rows: str, span_h: int, site_ids: list[int], start: dt.datetime, end: dt.datetime) -> int:
    if rows == SiteUtilVector.Rows.NODE:
        key, source = "r.node_id", f"{NodeUtilRollup._meta.db_table} r JOIN sites_node n ON n.id = r.node_id"
        extra = "AND r.span_h = %s"
    else:
        key = "r.gpu_id"
        hourly = span_h == 1
        table = GpuRollup1h._meta.db_table if hourly else GpuUtilRollup._meta.db_table
        source = f"{table} r JOIN sites_gpu g ON g.id = r.gpu_id JOIN sites_node n ON n.id = g.node_id"
        extra = "" if hourly else "AND r.span_h = %s"
    params = [rows, span_h, site_ids, start, end] + ([span_h] if extra else [])
    # Owners without a utilization sample are left out of all three arrays alike, so they stay aligned.
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {SiteUtilVector._meta.db_table}
                    (site_id, rows, span_h, bucket, ids, weighted, samples, computed_at)
                SELECT n.site_id, %s, %s, r.bucket,
                       string_agg(int4send({key}::int), ''::bytea ORDER BY {key}),
                       string_agg(float8send(r.util_mean_pct * r.util_samples), ''::bytea ORDER BY {key}),
                       string_agg(int4send(r.util_samples::int), ''::bytea ORDER BY {key}),
                       now()
                FROM {source}
                WHERE n.site_id = ANY(%s) AND r.bucket >= %s AND r.bucket < %s {extra}
                      AND r.util_samples > 0 AND r.util_mean_pct IS NOT NULL
                GROUP BY n.site_id, r.bucket
                ON CONFLICT (site_id, rows, span_h, bucket) DO UPDATE SET ids = EXCLUDED.ids,
                    weighted = EXCLUDED.weighted, samples = EXCLUDED.samples, computed_at = EXCLUDED.computed_at""",
            params)
        return cursor.rowcount


def _util_source(model, span_h: int) -> tuple[str, str, str]:
    """(FROM clause, key column, extra condition) of a block's source rows: the next finer span of the same model,
    or the GPUs' hourly rollups for the finest one."""
    spans = UTIL_SPANS_H if model is GpuUtilRollup else NODE_UTIL_SPANS_H
    finer = spans[spans.index(span_h) - 1] if spans.index(span_h) else None
    if finer:
        key = "r.gpu_id" if model is GpuUtilRollup else "r.node_id"
        return f"{model._meta.db_table} r", key, f"AND span_h = {finer}"
    hourly = GpuRollup1h._meta.db_table
    if model is GpuUtilRollup:
        return f"{hourly} r", "r.gpu_id", ""
    return f"{hourly} r JOIN sites_gpu g ON g.id = r.gpu_id", "g.node_id", ""


def _util_blocks_sql(*, model, span_h: int, start: dt.datetime, end: dt.datetime) -> int:
    # One INSERT ... SELECT per span: the aggregation never leaves the database (a 30-day backfill of 10,000
    # GPUs aggregates 7.2M hourly rows).
    table = model._meta.db_table
    key = "gpu_id" if model is GpuUtilRollup else "node_id"
    source, key_expr, extra = _util_source(model, span_h)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {table} ({key}, span_h, bucket, util_samples, util_mean_pct, computed_at)
                SELECT {key_expr}, %s, date_bin(%s, r.bucket, TIMESTAMPTZ '1970-01-01 00:00:00+00'),
                       SUM(r.util_samples), SUM(r.util_mean_pct * r.util_samples) / NULLIF(SUM(r.util_samples), 0),
                       now()
                FROM {source} WHERE r.bucket >= %s AND r.bucket < %s {extra}
                GROUP BY 1, 3
                ON CONFLICT ({key}, span_h, bucket) DO UPDATE SET util_samples = EXCLUDED.util_samples,
                    util_mean_pct = EXCLUDED.util_mean_pct, computed_at = EXCLUDED.computed_at""",
            [span_h, dt.timedelta(hours=span_h), start, end])
        return cursor.rowcount


def _util_blocks_python(*, model, span_h: int, start: dt.datetime, end: dt.datetime) -> int:
    step = dt.timedelta(hours=span_h)
    spans = UTIL_SPANS_H if model is GpuUtilRollup else NODE_UTIL_SPANS_H
    key = "gpu_id" if model is GpuUtilRollup else "node_id"
    if spans.index(span_h) == 0:
        rows = GpuRollup1h.objects.filter(bucket__gte=start, bucket__lt=end).values_list(
            "gpu_id" if model is GpuUtilRollup else "gpu__node_id", "bucket", "util_mean_pct", "util_samples")
    else:
        rows = model.objects.filter(span_h=spans[spans.index(span_h) - 1], bucket__gte=start,
                                    bucket__lt=end).values_list(key, "bucket", "util_mean_pct", "util_samples")
    sums: dict[tuple[int, dt.datetime], list] = defaultdict(lambda: [0.0, 0])
    for owner, bucket, mean, n in rows.iterator(chunk_size=20000):
        acc = sums[(owner, floor_to(bucket, step))]
        if n and mean is not None:
            acc[0] += mean * n
            acc[1] += n
    objs = [model(**{key: owner}, span_h=span_h, bucket=bucket, util_samples=n,
                  util_mean_pct=weighted / n if n else None)
            for (owner, bucket), (weighted, n) in sums.items()]
    model.objects.bulk_create(objs, update_conflicts=True, unique_fields=[key.removesuffix("_id"), "span_h", "bucket"],
                              update_fields=["util_samples", "util_mean_pct", "computed_at"], batch_size=2000)
    return len(objs)


BACKFILL_WATERMARK = "gpu_util_blocks_backfill"
VECTORS_BACKFILL_WATERMARK = "site_util_vectors_backfill"
BACKFILL_DONE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def gpu_util_rollup_backfill_step(*, now: dt.datetime) -> dict[str, object]:
    """Fill the utilization blocks (and the sites' vectors of them) of one more day of history, going backwards,
    until the earliest hourly rollup.

    History rolled up before the blocks existed has none; rather than a data migration (which would hold up a
    deploy for as long as the whole history takes to aggregate), every rollup run computes one day, newest first,
    so the recent heatmaps are right within minutes of an upgrade and a year of 10,000 GPUs completes in about
    three hours of runs. The watermark is the start of the oldest day done; recomputing is harmless (whole blocks,
    upserted), so a crash between the blocks and the watermark costs one day's recompute.
    """
    return _backfill_step(name=BACKFILL_WATERMARK, compute=gpu_util_rollup_compute, now=now)


def site_util_vectors_backfill_step(*, now: dt.datetime) -> dict[str, object]:
    """The same, one day per run, for the sites' vectors alone (`site_util_vectors_compute`): an installation whose
    blocks were backfilled before the vectors existed gets them for its history. Until a day has its vectors the
    heatmap reads that day's blocks, as before."""
    return _backfill_step(name=VECTORS_BACKFILL_WATERMARK, compute=site_util_vectors_compute, now=now)


def _backfill_step(*, name: str, compute, now: dt.datetime) -> dict[str, object]:
    mark = RollupWatermark.objects.filter(name=name).first()
    if mark is not None and mark.done_until <= BACKFILL_DONE:
        return {"day": None}
    upper = mark.done_until if mark else floor_to(now, DAY) + DAY
    # EXISTS rather than MIN(bucket): the hourly table has no index on bucket alone, and the oldest rows come first.
    if not GpuRollup1h.objects.filter(bucket__lt=upper).exists():
        # Every later hourly rollup gets its blocks from `gpu_rollup_1h_compute`: the backfill is over for good.
        RollupWatermark.objects.update_or_create(name=name, defaults={"done_until": BACKFILL_DONE})
        return {"day": None}
    lower = upper - DAY
    with transaction.atomic():
        rows = compute(start=lower, end=upper)
        RollupWatermark.objects.update_or_create(name=name, defaults={"done_until": lower})
    return {"day": lower.date(), "rows": rows}


WATERMARK = "gpu_rollups"


def gpu_rollups_run(*, now: dt.datetime) -> dict[str, object]:
    """The periodic job: from the watermark (minus the re-roll window) up to the last settled minute,
    at most `MAX_CATCHUP` per run. Idempotent; after downtime successive runs catch up."""
    settled = floor_to(now - SETTLE, MINUTE)
    mark = RollupWatermark.objects.filter(name=WATERMARK).first()
    if mark is None:
        first = GpuSample.objects.order_by("ts").values_list("ts", flat=True).first()
        if first is None:
            return {"from": None, "to": None, "minutes": 0}
        start = floor_to(first, MINUTE)
    else:
        start = min(mark.done_until, settled) - REROLL_WINDOW
    end = min(settled, start + MAX_CATCHUP + REROLL_WINDOW)
    if end <= start:
        return {"from": start, "to": end, "minutes": 0}
    with transaction.atomic():
        minutes = gpu_rollup_1m_compute(start=start, end=end)
        sites = site_rollup_1m_compute(start=start, end=end)
        hours = gpu_rollup_1h_compute(start=start, end=end)
        backfill = gpu_util_rollup_backfill_step(now=now)
        vectors_backfill = site_util_vectors_backfill_step(now=now)
        updated = RollupWatermark.objects.filter(name=WATERMARK, done_until__lt=end).update(done_until=end)
        if not updated:
            RollupWatermark.objects.get_or_create(name=WATERMARK, defaults={"done_until": end})
    return {"from": start, "to": end, "minutes": minutes, "site_minutes": sites, "hours": hours,
            "blocks_backfilled": backfill["day"], "vectors_backfilled": vectors_backfill["day"]}


def gpu_energy_from_samples(*, gpu_id: int, start: dt.datetime, end: dt.datetime) -> Decimal:
    """Energy (J) of one GPU over [start, end) straight from raw samples: the sum of counter segments.
    Used to cross-check rollups; dashboards read rollups."""
    previous = _previous_samples(start, [gpu_id]).get(gpu_id)
    total_mj = 0
    for ts, power, energy in GpuSample.objects.filter(gpu_id=gpu_id, ts__gte=start, ts__lt=end).order_by(
            "ts").values_list("ts", "power_w", "energy_mj"):
        if previous is not None:
            exact, _ = energy_delta(previous, (ts, power, energy))
            total_mj += exact or 0
        previous = (ts, power, energy)
    return Decimal(total_mj) / MJ_PER_J

