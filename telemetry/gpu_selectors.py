"""Reads of GPU telemetry for dashboards and the API. Every query goes through `visible_to(user)`.

Units are in the names: `util_pct` (0–100, % of time a kernel ran, NVML `utilization.gpu`), `power_w`
(watts), `energy_j` (joules, Decimal with 3 places), `memory_*_bytes`, `temperature_c`. Buckets are UTC
datetimes at the start of the minute/hour. Series come from rollups, never from raw samples over long
ranges; `gpu_latest_readings` reads raw samples, but only the last few minutes.
"""

from __future__ import annotations

import bisect
import datetime as dt
import operator
import sys
from array import array
from decimal import Decimal
from functools import reduce

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.db.models import Avg, Count, F, IntegerField, Max, Q, Sum
from django.db.models.functions import Cast, TruncDay, TruncHour

from factory_portal.crypto import hash_token
from sites.dashboard import STALE_AFTER_POLLS
from sites.models import Gpu, Node, Site
from telemetry.models import (
    HEATMAP_MAX_ROWS,
    GpuRollup1h,
    GpuRollup1m,
    GpuSample,
    GpuUtilRollup,
    NodeGpuCollector,
    NodeUtilRollup,
    SiteGpuRollup1m,
    SiteUtilVector,
)

User = AbstractBaseUser | AnonymousUser
# Ranges longer than this are served from hourly rollups so a chart stays under ~2,000 points.
MINUTE_RESOLUTION_MAX = dt.timedelta(hours=30)
LATEST_WINDOW = dt.timedelta(minutes=10)


def node_for_agent_token(*, token: str) -> Node | None:
    """The node whose agent token this is (tokens are stored hashed), or None."""
    if not token:
        return None
    return Node.objects.select_related("site").filter(agent_token_hash=hash_token(token)).first()


def node_gpu_collector(*, node: Node) -> NodeGpuCollector | None:
    return NodeGpuCollector.objects.filter(node=node).first()


def resolution_for(*, start: dt.datetime, end: dt.datetime) -> str:
    return "1m" if end - start <= MINUTE_RESOLUTION_MAX else "1h"


def site_gpu_series(*, user: User, site: Site, start: dt.datetime, end: dt.datetime,
                    resolution: str | None = None) -> list[dict]:
    """The site's GPU fleet over [start, end): one dict per bucket, oldest first.

    Keys: `bucket`, `gpu_count` (GPUs that reported), `util_mean_pct`, `util_max_pct`, `power_mean_w`
    (mean total GPU draw of the site), `power_max_w` (sum of per-GPU maxima: an upper bound of the peak),
    `energy_j` (Decimal J, None = no information), `energy_estimated` (True if any GPU had no energy counter).
    `resolution` "1m" or "1h"; by default 1m up to 30 h, else 1h (hours aggregated from the minutes).
    """
    resolution = resolution or resolution_for(start=start, end=end)
    qs = SiteGpuRollup1m.objects.visible_to(user).filter(site=site, bucket__gte=start, bucket__lt=end)
    if resolution == "1m":
        return list(qs.order_by("bucket").values(
            "bucket", "gpu_count", "util_mean_pct", "util_max_pct", "power_mean_w", "power_max_w", "energy_j",
            "energy_estimated"))
    hours: dict[dt.datetime, dict] = {}
    for row in qs.annotate(hour=TruncHour("bucket", tzinfo=dt.UTC)).order_by("bucket").values(
            "hour", "gpu_count", "util_samples", "util_mean_pct", "util_max_pct", "power_mean_w", "power_max_w",
            "energy_j", "energy_estimated"):
        h = hours.setdefault(row["hour"], {"bucket": row["hour"], "gpu_count": 0, "_util_sum": 0.0, "_util_n": 0,
                                           "util_max_pct": None, "_power_sum": 0.0, "_power_n": 0,
                                           "power_max_w": None, "energy_j": None, "energy_estimated": False})
        h["gpu_count"] = max(h["gpu_count"], row["gpu_count"])
        if row["util_samples"]:
            h["_util_sum"] += row["util_mean_pct"] * row["util_samples"]
            h["_util_n"] += row["util_samples"]
            h["util_max_pct"] = max(h["util_max_pct"] or 0, row["util_max_pct"])
        if row["power_mean_w"] is not None:
            h["_power_sum"] += row["power_mean_w"]
            h["_power_n"] += 1
            h["power_max_w"] = max(h["power_max_w"] or 0.0, row["power_max_w"])
        if row["energy_j"] is not None:
            h["energy_j"] = (h["energy_j"] or Decimal(0)) + row["energy_j"]
        h["energy_estimated"] = h["energy_estimated"] or row["energy_estimated"]
    out = []
    for h in hours.values():
        h["util_mean_pct"] = h.pop("_util_sum") / h["_util_n"] if h["_util_n"] else None
        h["power_mean_w"] = h.pop("_power_sum") / h["_power_n"] if h["_power_n"] else None
        h.pop("_util_n"), h.pop("_power_n")
        out.append(h)
    return out


def site_energy_j(*, user: User, site: Site, start: dt.datetime, end: dt.datetime) -> dict:
    """Energy of the site's GPUs over [start, end) in joules: `{"energy_j": Decimal, "estimated": bool}`.
    Exact (sum of counter deltas) where GPUs have energy counters; buckets are whole minutes."""
    agg = SiteGpuRollup1m.objects.visible_to(user).filter(site=site, bucket__gte=start, bucket__lt=end).aggregate(
        energy=Sum("energy_j"), estimated=Count("pk", filter=Q(energy_estimated=True)))
    return {"energy_j": agg["energy"] if agg["energy"] is not None else Decimal(0),
            "estimated": bool(agg["estimated"])}


def gpu_series(*, user: User, gpu: Gpu, start: dt.datetime, end: dt.datetime,
               resolution: str | None = None) -> list[dict]:
    """One GPU over [start, end) from its 1-minute or 1-hour rollups. Keys: `bucket`, `sample_count`,
    `util_mean_pct`, `util_max_pct`, `power_mean_w`, `power_max_w`, `energy_j`, `energy_estimated`,
    `memory_used_max_bytes`, `temperature_max_c`."""
    resolution = resolution or resolution_for(start=start, end=end)
    model = GpuRollup1m if resolution == "1m" else GpuRollup1h
    return list(model.objects.visible_to(user).filter(gpu=gpu, bucket__gte=start, bucket__lt=end).order_by(
        "bucket").values("bucket", "sample_count", "util_mean_pct", "util_max_pct", "power_mean_w", "power_max_w",
                         "energy_j", "energy_estimated", "memory_used_max_bytes", "temperature_max_c"))


def gpu_latest_readings(*, user: User, site: Site, now: dt.datetime) -> list[dict]:
    """The latest raw reading of each GPU of the site within the last 10 minutes, GPU order.

    Keys: `gpu_id`, `uuid`, `hostname`, `index`, `name`, `status`, `ts` (None if no recent reading),
    `util_pct`, `memory_used_bytes`, `memory_total_bytes`, `power_w`, `temperature_c`, `sm_clock_mhz`,
    `throttle_reasons`, `unsupported` (field → reason; a None value with a reason is unsupported, not 0).
    """
    gpus = list(Gpu.objects.visible_to(user).filter(node__site=site).select_related("node").order_by(
        "node__hostname", "index"))
    since = now - LATEST_WINDOW
    last = dict(GpuSample.objects.filter(gpu_id__in=[g.pk for g in gpus], ts__gte=since, ts__lte=now)
                .values("gpu_id").annotate(last_ts=Max("ts")).values_list("gpu_id", "last_ts"))
    samples = {s.gpu_id: s for s in GpuSample.objects.filter(gpu_id__in=list(last), ts__in=set(last.values()))
               if last.get(s.gpu_id) == s.ts}
    out = []
    for g in gpus:
        s = samples.get(g.pk)
        out.append({
            "gpu_id": g.pk, "uuid": g.uuid, "hostname": g.node.hostname, "index": g.index, "name": g.name,
            "status": g.status, "ts": s.ts if s else None, "util_pct": s.util_pct if s else None,
            "memory_used_bytes": s.memory_used_bytes if s else None, "memory_total_bytes": g.memory_total_bytes,
            "power_w": s.power_w if s else None, "temperature_c": s.temperature_c if s else None,
            "sm_clock_mhz": s.sm_clock_mhz if s else None, "throttle_reasons": s.throttle_reasons if s else None,
            "unsupported": (s.unsupported or {}) if s else {},
        })
    return out


def site_gpu_heatmap(*, user: User, site: Site, start: dt.datetime, end: dt.datetime,
                     resolution: str | None = None) -> dict:
    """GPU × time utilization matrix for a heatmap.

    Returns `{"gpus": ["host/gpu0", ...], "gpu_ids": [...], "buckets": [datetime, ...],
    "util_pct": [[mean util % or None per bucket] per GPU]}` (None = no reading or not supported).
    """
    resolution = resolution or resolution_for(start=start, end=end)
    model = GpuRollup1m if resolution == "1m" else GpuRollup1h
    gpus = list(Gpu.objects.visible_to(user).filter(node__site=site).select_related("node").order_by(
        "node__hostname", "index"))
    rows = model.objects.filter(gpu_id__in=[g.pk for g in gpus], bucket__gte=start, bucket__lt=end).values_list(
        "gpu_id", "bucket", "util_mean_pct")
    buckets = sorted({b for _, b, _ in rows})
    col = {b: i for i, b in enumerate(buckets)}
    row_of = {g.pk: i for i, g in enumerate(gpus)}
    matrix: list[list[float | None]] = [[None] * len(buckets) for _ in gpus]
    for gpu_id, bucket, util in rows:
        matrix[row_of[gpu_id]][col[bucket]] = util
    return {"gpus": [f"{g.node.hostname}/gpu{g.index}" for g in gpus], "gpu_ids": [g.pk for g in gpus],
            "buckets": buckets, "util_pct": matrix}


# --- Dashboards (issue 7): live figures, fleet series aggregated in SQL, binned heatmaps -------------------------

# The live figures of a card are over the readings of the last few poll intervals: the same window that
# decides whether a GPU is online (sites.dashboard.STALE_AFTER_POLLS).
LIVE_WINDOW_POLLS = STALE_AFTER_POLLS
# A heatmap keeps at most about this many time columns; rows are GPUs.
HEATMAP_MAX_COLUMNS = 180
# ... and at most about this many cells: a 1,000-GPU site gets ~36 columns, still more than a pixel row per GPU
# (the JSON stays ~200 KB, and the browser draws it in tens of milliseconds).
HEATMAP_MAX_CELLS = 36_000
HEATMAP_CACHE_S = 600


def sites_gpu_now(*, user: User, sites: list[Site], now: dt.datetime) -> dict[int, dict]:
    """Per site, its GPUs' latest readings within the last `LIVE_WINDOW_POLLS` poll intervals of the site.

    Returns `{site_id: {"gpus_reporting", "util_mean_pct", "power_w"}}`: `gpus_reporting` counts the GPUs whose
    newest reading is in the window, `util_mean_pct` is the mean of those readings that had utilization (None if none
    did), `power_w` the sum of those that had power (None if none did). Sites without such a GPU are absent. The
    cards get the same figures from their inventory scan (`sites.dashboard.gpu_inventory`); this is the selector on
    its own.

    Read from the GPU rows (`Gpu.last_seen_at`, `last_util_pct`, `last_power_w`, kept by the ingest in the same
    UPDATE as `last_seen_at`): one row per GPU of the given sites, so the cost follows the user's sites, not the
    installation. The raw samples of the window (the previous way) were found among the whole installation's
    readings of the day: ≈ 50 ms at 10,000 GPUs, growing with every other partner's fleet.
    """
    if not sites:
        return {}
    window = reduce(operator.or_, (Q(node__site_id=s.pk, last_seen_at__gte=now - dt.timedelta(
        seconds=LIVE_WINDOW_POLLS * s.gpu_poll_interval_s)) for s in sites))
    rows = (Gpu.objects.visible_to(user).filter(window, last_seen_at__lte=now)
            .values_list("node__site_id")
            .annotate(n=Count("pk"), util_sum=Sum("last_util_pct"), util_n=Count("last_util_pct"),
                      power=Sum("last_power_w"))
            .order_by())
    return {site_id: {"gpus_reporting": n, "util_mean_pct": util_sum / util_n if util_n else None,
                      "power_w": float(power) if power is not None else None}
            for site_id, n, util_sum, util_n, power in rows}


def sites_util_mean(*, user: User, site_ids: list[int], start: dt.datetime, end: dt.datetime) -> dict[int, float]:
    """Mean GPU utilization (%) per site over [start, end) from the per-site 1-minute rollups (sample-weighted)."""
    rows = (SiteGpuRollup1m.objects.visible_to(user)
            .filter(site_id__in=site_ids, bucket__gte=start, bucket__lt=end, util_samples__gt=0)
            .values("site_id").annotate(weighted=Sum(F("util_mean_pct") * F("util_samples")), n=Sum("util_samples")))
    return {r["site_id"]: r["weighted"] / r["n"] for r in rows if r["n"]}


def _bucket_expr(field: str, resolution: str):
    if resolution == "1m":
        return F(field)
    if resolution == "1h":
        return TruncHour(field, tzinfo=dt.UTC)
    return TruncDay(field, tzinfo=dt.UTC)


def _utc(value: dt.datetime | str) -> dt.datetime:
    if isinstance(value, str):  # SQLite hands back text
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _fleet_bucket_sums(*, user: User, site_ids: list[int], where: Q, resolution: str) -> list[tuple]:
    """(site id, bucket, Σ util × samples, Σ samples, Σ power, n power, max power, Σ energy, any estimated) per site
    and bucket of the per-site 1-minute rollups matching `where`: sums, so pieces of a range add up exactly."""
    qs = (SiteGpuRollup1m.objects.visible_to(user).filter(where, site_id__in=site_ids)
          .annotate(b=_bucket_expr("bucket", resolution)).values("site_id", "b")
          .annotate(weighted=Sum(F("util_mean_pct") * F("util_samples")), n=Sum("util_samples"),
                    power=Sum("power_mean_w"), power_n=Count("power_mean_w"), power_max=Max("power_max_w"),
                    energy=Sum("energy_j"), estimated=Max(Cast("energy_estimated", IntegerField())))
          .order_by())
    return list(qs.values_list("site_id", "b", "weighted", "n", "power", "power_n", "power_max", "energy",
                               "estimated"))


def sites_gpu_buckets(*, user: User, site_ids: list[int], start: dt.datetime, end: dt.datetime,
                      resolution: str | None = None, now: dt.datetime | None = None) -> dict[int, list[dict]]:
    """The sites' GPU fleets over [start, end), aggregated in the database, one list per site, oldest first.

    Keys: `bucket`, `util_mean_pct` (sample-weighted mean), `power_mean_w` (mean of the minutes' site draw),
    `power_max_w` (highest minute upper bound), `energy_j` (Decimal J or None), `energy_estimated`.
    `resolution`: "1m" up to 30 h, "1h" up to 60 days, else "1d" — at most ~1,800 buckets a series.

    Hours and days: whole UTC days (and today's hours) that ended more than `HEATMAP_SETTLED_AFTER` before `now`
    are settled; their sums are cached per (site, resolution, day) for `HEATMAP_CACHE_S`, only for sites the user
    may see (checked first, so a cached piece is never served across partners). The partial first day and the
    unsettled tail are read on every call, so a new rollup shows on the next refresh.
    """
    from django.core.cache import cache

    if resolution is None:
        span = end - start
        resolution = "1m" if span <= MINUTE_RESOLUTION_MAX else "1h" if span <= dt.timedelta(days=60) else "1d"
    out: dict[int, list[dict]] = {i: [] for i in site_ids}
    if resolution == "1m":
        rows = _fleet_bucket_sums(user=user, site_ids=site_ids, resolution=resolution,
                                  where=Q(bucket__gte=start, bucket__lt=end))
    else:
        visible = sorted(Site.objects.visible_to(user).filter(pk__in=site_ids).values_list("pk", flat=True))
        day = dt.timedelta(days=1)
        # Pieces: whole days (never split a bucket: hours and days both divide a day), today cut at the settled hour.
        chunks = _heatmap_chunks(first=start, end=end, step=_SOURCE_STEP[resolution], source=resolution,
                                 settled=(now or end) - HEATMAP_SETTLED_AFTER)
        cached = [(a, b) for a, b, done in chunks if done and a == _floor(a, day)]
        live = Q(pk__in=[])
        for a, b, _settled in chunks:
            if (a, b) not in cached:
                live |= Q(bucket__gte=a, bucket__lt=b)

        def key(site_id: int, a: dt.datetime, b: dt.datetime) -> str:
            return f"fleet:{site_id}:{resolution}:{int(a.timestamp())}:{int(b.timestamp())}"

        keys = {key(i, a, b): (i, a, b) for i in visible for a, b in cached}
        pieces = cache.get_many(list(keys)) if keys else {}
        missing = [k for k in keys if k not in pieces]
        if missing:
            # Every missing settled piece of every visible site in one query, split per (site, day) and cached.
            lo, hi = min(keys[k][1] for k in missing), max(keys[k][2] for k in missing)
            fresh: dict[str, list] = {k: [] for k in missing}
            # Cached pieces start at midnight, one per (site, day).
            piece_of = {(i, int(a.timestamp())): k for k, (i, a, _) in keys.items() if k in fresh}
            for row in _fleet_bucket_sums(user=user, site_ids=visible, resolution=resolution,
                                          where=Q(bucket__gte=lo, bucket__lt=hi)):
                k = piece_of.get((row[0], int(_floor(_utc(row[1]), day).timestamp())))
                if k is not None:
                    fresh[k].append(row)
            cache.set_many(fresh, HEATMAP_CACHE_S)
            pieces |= fresh
        rows = [row for piece in pieces.values() for row in piece]
        if visible:
            rows += _fleet_bucket_sums(user=user, site_ids=visible, resolution=resolution, where=live)
    rows.sort(key=lambda r: (r[0], r[1]))
    for site_id, b, weighted, n, power, power_n, power_max, energy, estimated in rows:
        out[site_id].append({
            "bucket": b, "util_mean_pct": weighted / n if n else None,
            "power_mean_w": power / power_n if power_n else None, "power_max_w": power_max, "energy_j": energy,
            "energy_estimated": bool(estimated),
        })
    return out


def gpu_buckets(*, user: User, gpu: Gpu, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """One GPU over [start, end) for its detail page: 1-minute rollups up to 30 h, hourly beyond (≤ 720 points
    for 30 days; longer custom ranges are aggregated to days). Keys as `gpu_series`."""
    span = end - start
    if span <= MINUTE_RESOLUTION_MAX:
        return gpu_series(user=user, gpu=gpu, start=start, end=end, resolution="1m")
    if span <= dt.timedelta(days=60):
        return gpu_series(user=user, gpu=gpu, start=start, end=end, resolution="1h")
    rows = (GpuRollup1h.objects.visible_to(user).filter(gpu=gpu, bucket__gte=start, bucket__lt=end)
            .annotate(b=TruncDay("bucket", tzinfo=dt.UTC)).values("b")
            .annotate(weighted=Sum(F("util_mean_pct") * F("util_samples")), n=Sum("util_samples"),
                      util_max=Max("util_max_pct"), power=Avg("power_mean_w"), power_max=Max("power_max_w"),
                      energy=Sum("energy_j"), estimated=Max(Cast("energy_estimated", IntegerField())),
                      memory=Max("memory_used_max_bytes"), temp=Max("temperature_max_c"), samples=Sum("sample_count"))
            .order_by("b"))
    return [{"bucket": r["b"], "sample_count": r["samples"],
             "util_mean_pct": r["weighted"] / r["n"] if r["n"] else None, "util_max_pct": r["util_max"],
             "power_mean_w": r["power"], "power_max_w": r["power_max"], "energy_j": r["energy"],
             "energy_estimated": bool(r["estimated"]), "memory_used_max_bytes": r["memory"],
             "temperature_max_c": r["temp"]} for r in rows]


def gpu_latest_sample(*, user: User, gpu: Gpu, now: dt.datetime) -> GpuSample | None:
    """The GPU's newest raw reading within the last 10 minutes (None: nothing recent, the GPU is stale)."""
    return (GpuSample.objects.visible_to(user).filter(gpu_id=gpu.pk, ts__gte=now - LATEST_WINDOW, ts__lte=now)
            .order_by("-ts").first())


def gpu_energy_j(*, user: User, gpu: Gpu, start: dt.datetime, end: dt.datetime) -> dict:
    """Energy of one GPU over [start, end) from its rollups (hourly where whole hours allow)."""
    model = GpuRollup1m if end - start <= MINUTE_RESOLUTION_MAX else GpuRollup1h
    agg = model.objects.visible_to(user).filter(gpu=gpu, bucket__gte=start, bucket__lt=end).aggregate(
        energy=Sum("energy_j"), estimated=Count("pk", filter=Q(energy_estimated=True)))
    return {"energy_j": agg["energy"], "estimated": bool(agg["estimated"])}


def heatmap_plan(*, start: dt.datetime, end: dt.datetime, gpus: int = 1) -> tuple[str, dt.timedelta]:
    """Which rollup a heatmap reads and how wide its columns are: at most `HEATMAP_MAX_COLUMNS` columns (fewer
    for big sites, ≤ `HEATMAP_MAX_CELLS` cells, never under 24), whole minutes from 1-minute rollups up to 3 h,
    whole hours beyond: from hourly rollups, or from the 6-hour / 1-day utilization blocks (`GpuUtilRollup`)
    when the columns are multiples of them. `gpus` is the number of rows (GPUs, or nodes on a big site)."""
    span = end - start
    columns = max(24, min(HEATMAP_MAX_COLUMNS, HEATMAP_MAX_CELLS // max(1, gpus)))
    if span <= dt.timedelta(hours=3):
        return "1m", dt.timedelta(minutes=max(1, -(-span // dt.timedelta(minutes=columns))))
    hours = max(1, -(-span // dt.timedelta(hours=columns)))
    # Columns divide a day (or are whole days), so they line up with midnight UTC and cache by day.
    hours = next((h for h in (1, 2, 3, 4, 6, 8, 12, 24) if h >= hours), -(-hours // 24) * 24)
    source = "1d" if hours % 24 == 0 else "6h" if hours % 6 == 0 else "1h"
    return source, dt.timedelta(hours=hours)


BIN_ORIGIN = dt.datetime(2000, 1, 3, tzinfo=dt.UTC)  # a Monday, midnight UTC: columns align to whole hours/days
# Hourly rollups older than this no longer change (the rollup run re-rolls the last 10 minutes): cacheable.
HEATMAP_SETTLED_AFTER = dt.timedelta(hours=1)
_SOURCES = {"1m": (GpuRollup1m, None), "1h": (GpuRollup1h, None), "6h": (GpuUtilRollup, 6), "1d": (GpuUtilRollup, 24)}
# Node rows (big sites) read the per-node blocks: 1,125 nodes × 30 days instead of 9,000 GPUs × 30 days.
_NODE_SOURCES = {"1h": 1, "6h": 6, "1d": 24}
_SOURCE_STEP = {"1m": dt.timedelta(minutes=1), "1h": dt.timedelta(hours=1), "6h": dt.timedelta(hours=6),
                "1d": dt.timedelta(days=1)}


def _floor(value: dt.datetime, step: dt.timedelta) -> dt.datetime:
    return BIN_ORIGIN + ((value - BIN_ORIGIN) // step) * step


def heatmap_rows(gpus: list[tuple[int, int, str, int]]) -> tuple[str, list[str], dict[int, int]]:
    """How the heatmap's rows group GPUs given as (gpu id, node id, hostname, index), in display order.

    Returns (kind, row labels, {gpu id or node id: row}): kind "gpu" (a row per GPU, keyed by GPU id) up to
    `HEATMAP_MAX_ROWS` GPUs; beyond, "node" (a row per node, the mean of its GPUs, keyed by node id), or "nodes"
    (bins of consecutive nodes) when even the nodes are too many. Labels say how many GPUs a row averages."""
    if len(gpus) <= HEATMAP_MAX_ROWS:
        return "gpu", [f"{host}/gpu{index}" for _, _, host, index in gpus], {pk: i for i, (pk, *_) in enumerate(gpus)}
    nodes: dict[int, list] = {}
    for _, node_id, host, _ in gpus:
        nodes.setdefault(node_id, [host, 0])[1] += 1
    return heatmap_node_rows([(node_id, host, count) for node_id, (host, count) in nodes.items()])


def heatmap_node_rows(nodes: list[tuple[int, str, int]]) -> tuple[str, list[str], dict[int, int]]:
    """`heatmap_rows` of a big site from its nodes given as (node id, hostname, GPU count), in display order: a row
    per node, or per bin of consecutive nodes when even the nodes are more than `HEATMAP_MAX_ROWS`."""
    per_bin = -(-len(nodes) // HEATMAP_MAX_ROWS)
    labels, row_of = [], {}
    for r, i in enumerate(range(0, len(nodes), per_bin)):
        members = nodes[i:i + per_bin]
        count = sum(m[2] for m in members)
        first, last = members[0][1], members[-1][1]
        name = first if len(members) == 1 else f"{first} … {last}"
        labels.append(f"{name} ({count} GPU{'s' if count != 1 else ''})")
        row_of |= dict.fromkeys((m[0] for m in members), r)
    return ("node" if per_bin == 1 else "nodes"), labels, row_of


def _heatmap_cells(*, site: Site, source: str, by_node: bool, start: dt.datetime, end: dt.datetime,
                   step: dt.timedelta) -> list[tuple[int, int, float, int]]:
    """(GPU or node id, column start as epoch seconds, Σ util × samples, Σ samples) over [start, end), binned in
    the database. Sums rather than means, so a column split across chunks (or GPUs merged in a row) adds up
    exactly to the sample-weighted mean."""
    if by_node and source in _NODE_SOURCES:
        return _node_heatmap_cells(site=site, span_h=_NODE_SOURCES[source], start=start, end=end, step=step)
    model, span_h = _SOURCES[source]
    if connection.vendor != "postgresql":  # SQLite (single-machine default): whole hours/days, in Python
        qs = model.objects.filter(gpu__node__site=site, bucket__gte=start, bucket__lt=end)
        if span_h:
            qs = qs.filter(span_h=span_h)
        acc: dict[tuple[int, int], list] = {}
        for gpu_id, node_id, bucket, mean, n in qs.values_list("gpu_id", "gpu__node_id", "bucket", "util_mean_pct",
                                                               "util_samples"):
            a = acc.setdefault((node_id if by_node else gpu_id, int(_floor(bucket, step).timestamp())), [0.0, 0])
            if n and mean is not None:
                a[0] += mean * n
                a[1] += n
        return [(k, c, w, n) for (k, c), (w, n) in acc.items()]
    table = model._meta.db_table
    where = "n.site_id = %s AND r.bucket >= %s AND r.bucket < %s" + (" AND r.span_h = %s" if span_h else "")
    params: list = [site.pk, start, end] + ([span_h] if span_h else [])
    joins = f"FROM {table} r JOIN sites_gpu g ON g.id = r.gpu_id JOIN sites_node n ON n.id = g.node_id"
    if not by_node and step == _SOURCE_STEP[source]:
        # One source row per cell: no aggregation.
        sql = (f"SELECT r.gpu_id, EXTRACT(EPOCH FROM r.bucket)::bigint, r.util_mean_pct * r.util_samples, "
               f"r.util_samples {joins} WHERE {where}")
    else:
        key = "g.node_id" if by_node else "r.gpu_id"
        sql = (f"SELECT {key}, EXTRACT(EPOCH FROM date_bin(%s, r.bucket, %s))::bigint, "
               f"SUM(r.util_mean_pct * r.util_samples), SUM(r.util_samples) {joins} WHERE {where} GROUP BY 1, 2")
        params = [step, BIN_ORIGIN, *params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _node_heatmap_cells(*, site: Site, span_h: int, start: dt.datetime, end: dt.datetime,
                        step: dt.timedelta) -> list[tuple[int, int, float, int]]:
    """`_heatmap_cells` of node rows from the per-node blocks (`NodeUtilRollup`): the same sums, one row per node
    and block instead of one per GPU."""
    if connection.vendor != "postgresql":
        acc: dict[tuple[int, int], list] = {}
        for node_id, bucket, mean, n in NodeUtilRollup.objects.filter(
                node__site=site, span_h=span_h, bucket__gte=start, bucket__lt=end).values_list(
                "node_id", "bucket", "util_mean_pct", "util_samples"):
            a = acc.setdefault((node_id, int(_floor(bucket, step).timestamp())), [0.0, 0])
            if n and mean is not None:
                a[0] += mean * n
                a[1] += n
        return [(k, c, w, n) for (k, c), (w, n) in acc.items()]
    table = NodeUtilRollup._meta.db_table
    where = ("r.node_id IN (SELECT id FROM sites_node WHERE site_id = %s) AND r.span_h = %s AND r.bucket >= %s "
             "AND r.bucket < %s")
    params: list = [site.pk, span_h, start, end]
    if step == dt.timedelta(hours=span_h):
        sql = (f"SELECT r.node_id, EXTRACT(EPOCH FROM r.bucket)::bigint, r.util_mean_pct * r.util_samples, "
               f"r.util_samples FROM {table} r WHERE {where}")
    else:
        sql = (f"SELECT r.node_id, EXTRACT(EPOCH FROM date_bin(%s, r.bucket, %s))::bigint, "
               f"SUM(r.util_mean_pct * r.util_samples), SUM(r.util_samples) FROM {table} r WHERE {where} "
               "GROUP BY 1, 2")
        params = [step, BIN_ORIGIN, *params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _heatmap_chunks(*, first: dt.datetime, end: dt.datetime, step: dt.timedelta, source: str,
                    settled: dt.datetime) -> list[tuple[dt.datetime, dt.datetime, bool]]:
    """[start, end) pieces of the range and whether each is settled (cacheable): whole days (or whole columns
    when columns are longer), and today split at `settled` so only the unsettled tail is read on every refresh."""
    chunk = max(step, dt.timedelta(days=1))
    granule = _SOURCE_STEP[source]
    settled = _floor(settled, granule) if source != "1m" else first
    out, cursor = [], first
    while cursor < end:
        upto = min(_floor(cursor, chunk) + chunk, end)
        if upto <= settled:
            out.append((cursor, upto, True))
        elif cursor < settled and step < chunk:
            out += [(cursor, settled, True), (settled, upto, False)]
        else:
            out.append((cursor, upto, False))
        cursor = upto
    return out


def _fill(sums: array, counts: array, cells, *, row_of: dict[int, int], col_of: dict[int, int], width: int) -> None:
    """Add (GPU or node id, column start, Σ util × samples, Σ samples) cells into the flat row-major matrices."""
    for key, col, weighted, n in cells:
        r, c = row_of.get(key), col_of.get(col)
        if r is not None and c is not None and n:
            sums[r * width + c] += float(weighted)
            counts[r * width + c] += int(n)


_VECTOR_SPAN_H = {"1h": 1, "6h": 6, "1d": 24}


def _unpack(blob: bytes, code: str) -> array:
    values = array(code, blob)
    if sys.byteorder == "little":  # packed big-endian by the database (int4send, float8send)
        values.byteswap()
    return values


def _heatmap_vectors(sums: array, counts: array, *, site: Site, source: str, by_node: bool, step: dt.timedelta,
                     missing: list[tuple[str, dt.datetime, dt.datetime]], row_of: dict[int, int],
                     col_of: dict[int, int], width: int) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """Add the missing settled pieces that the site's utilization vectors (`SiteUtilVector`) cover whole — one row
    per block instead of one per GPU or node and block — into the matrices, cache them as `_heatmap_settled` does,
    and return the pieces they do not cover (a block without a vector: never computed, e.g. before an upgrade's
    backfill or on SQLite, or with no utilization sample), which are read from the blocks themselves."""
    from django.core.cache import cache

    span_h = _VECTOR_SPAN_H.get(source)
    if span_h is None or connection.vendor != "postgresql":
        return missing
    block = dt.timedelta(hours=span_h)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXTRACT(EPOCH FROM bucket)::bigint, ids, weighted, samples FROM {SiteUtilVector._meta.db_table} "
            "WHERE site_id = %s AND rows = %s AND span_h = %s AND bucket >= %s AND bucket < %s",
            [site.pk, SiteUtilVector.Rows.NODE if by_node else SiteUtilVector.Rows.GPU, span_h, missing[0][1],
             missing[-1][2]])
        vectors = cursor.fetchall()
    starts = [int(a.timestamp()) for _, a, _ in missing]
    per_piece: dict[int, list] = {}
    for row in vectors:
        p = bisect.bisect_right(starts, row[0]) - 1
        if p >= 0 and row[0] < missing[p][2].timestamp():
            per_piece.setdefault(p, []).append(row)
    # The GPU set rarely changes between blocks: unpack the ids and map them to rows once.
    rows_of_ids: dict[bytes, tuple[array, list[int]]] = {}
    split = {}
    for p, piece_vectors in per_piece.items():
        name, a, b = missing[p]
        if len(piece_vectors) != (b - a) // block:
            continue
        ids_q, cols_q, weighted_d, samples_q = array("q"), array("q"), array("d"), array("q")
        for bucket, ids_blob, weighted_blob, samples_blob in piece_vectors:
            ids_blob = bytes(ids_blob)
            known = rows_of_ids.get(ids_blob)
            if known is None:
                ids = array("q", _unpack(ids_blob, "i"))
                known = rows_of_ids[ids_blob] = (ids, [row_of.get(i, -1) for i in ids])
            ids, rows = known
            col = int(_floor(dt.datetime.fromtimestamp(bucket, dt.UTC), step).timestamp())
            weighted, samples = _unpack(bytes(weighted_blob), "d"), _unpack(bytes(samples_blob), "i")
            ids_q.extend(ids)
            cols_q.extend(array("q", [col]) * len(rows))
            weighted_d.extend(weighted)
            samples_q.extend(array("q", samples))
            c = col_of.get(col)
            if c is None:
                continue
            for r, w, n in zip(rows, weighted, samples, strict=True):
                if r >= 0:
                    sums[r * width + c] += w
                    counts[r * width + c] += n
        split[name] = (ids_q, cols_q, weighted_d, samples_q)
    if split:
        cache.set_many({k: tuple(a.tobytes() for a in arrays) for k, arrays in split.items()}, HEATMAP_CACHE_S)
    return [piece for piece in missing if piece[0] not in split]


def _heatmap_settled(sums: array, counts: array, *, tag: str, site: Site, source: str, by_node: bool,
                     step: dt.timedelta, settled: list[tuple[dt.datetime, dt.datetime]], row_of: dict[int, int],
                     col_of: dict[int, int], width: int) -> None:
    """Add the settled pieces' cells into the flat matrices. Each piece is cached (`HEATMAP_CACHE_S`) as four flat
    arrays (GPU or node id, column start, Σ util × samples, Σ samples): pickled as bytes, not 30,000 tuples, and
    independent of where the range starts, so a range moving on by a column reuses them. Every piece the cache lacks
    is read in one query, placed and split in one pass."""
    from django.core.cache import cache

    keys = {f"{tag}:{int(a.timestamp())}:{int(b.timestamp())}": (a, b) for a, b in settled}
    pieces = cache.get_many(list(keys)) if keys else {}
    for ids, cols, weighted, n in pieces.values():
        for key, col, w, k in zip(array("q", ids), array("q", cols), array("d", weighted), array("q", n),
                                  strict=True):
            r, c = row_of.get(key), col_of.get(col)
            if r is not None and c is not None:
                sums[r * width + c] += w
                counts[r * width + c] += k
    missing = [(k, *keys[k]) for k in keys if k not in pieces]
    if not missing:
        return
    missing = _heatmap_vectors(sums, counts, site=site, source=source, by_node=by_node, step=step, missing=missing,
                               row_of=row_of, col_of=col_of, width=width)
    if not missing:
        return
    cells = _heatmap_cells(site=site, source=source, by_node=by_node, start=missing[0][1], end=missing[-1][2],
                           step=step)
    split = {k: (array("q"), array("q"), array("d"), array("q")) for k, *_ in missing}
    # Pieces are sorted and disjoint: bisect on their starts (30 pieces × 34,000 cells otherwise). Cached pieces
    # between missing ones were read again by the one query: skipped, they are already added.
    starts = [int(a.timestamp()) for _, a, _ in missing]
    ends = [int(b.timestamp()) for _, _, b in missing]
    names = [k for k, *_ in missing]
    for key, col, weighted, n in cells:
        p = bisect.bisect_right(starts, col) - 1
        if p < 0 or col >= ends[p] or not n:
            continue
        w, k = float(weighted), int(n)
        piece = split[names[p]]
        piece[0].append(key)
        piece[1].append(col)
        piece[2].append(w)
        piece[3].append(k)
        r, c = row_of.get(key), col_of.get(col)
        if r is not None and c is not None:
            sums[r * width + c] += w
            counts[r * width + c] += k
    cache.set_many({k: tuple(a.tobytes() for a in arrays) for k, arrays in split.items()}, HEATMAP_CACHE_S)


def site_gpu_heatmap_binned(*, user: User, site: Site, start: dt.datetime, end: dt.datetime,
                            now: dt.datetime | None = None) -> dict:
    """GPU × time utilization for the site page's heatmap, at most ~`HEATMAP_MAX_COLUMNS` columns.

    Returns `{"gpus": [row label, ...], "gpu_ids", "rows": "gpu" | "node" | "nodes", "gpu_count", "columns":
    [column start, ...], "step": timedelta, "util_pct": [[mean % or None per column] per row]}` (None = no
    reading, never 0). A site with more than `HEATMAP_MAX_ROWS` GPUs gets a row per node (or per bin of nodes).

    Settled pieces of the range (ended more than `HEATMAP_SETTLED_AFTER` before `now`) are read once, in one
    query, and cached (`HEATMAP_CACHE_S`) per (site, source, step, rows, piece): a 15-second refresh of a
    30-day heatmap then reads only the last hour's rows.
    """
    return _site_heatmap(site=site, nodes=Node.objects.visible_to(user).filter(site=site),
                         gpus=Gpu.objects.visible_to(user).filter(node__site=site), start=start, end=end,
                         now=now or end)


def _site_heatmap(*, site: Site, nodes, gpus, start: dt.datetime, end: dt.datetime, now: dt.datetime,
                  touch: bool = False) -> dict:
    """`site_gpu_heatmap_binned` over the given (already scoped) node and GPU querysets. `touch`: a cached settled
    matrix gets its expiry renewed (the pre-warm keeps what users read warm)."""
    from django.core.cache import cache

    # GPUs counted per node first: a big site's rows are its nodes, so its 9,000 GPUs are never listed one by one.
    nodes = list(nodes.annotate(n=Count("gpus"), top=Max("gpus__id"))
                 .filter(n__gt=0).order_by("hostname").values_list("pk", "hostname", "n", "top"))
    gpu_count, top_id = sum(n[2] for n in nodes), max((n[3] for n in nodes), default=0)
    if gpu_count <= HEATMAP_MAX_ROWS:
        gpus = list(gpus.order_by("node__hostname", "index").values_list("pk", "node_id", "node__hostname", "index"))
        kind, labels, row_of = heatmap_rows(gpus)
    else:
        gpus = []
        kind, labels, row_of = heatmap_node_rows([(pk, host, n) for pk, host, n, _ in nodes])
    source, step = heatmap_plan(start=start, end=end, gpus=len(labels))
    first = _floor(start, step)
    columns: list[dt.datetime] = []
    c = first
    while c < end:
        columns.append(c)
        c += step
    col_of = {int(col.timestamp()): i for i, col in enumerate(columns)}
    width = len(columns)
    by_node = kind != "gpu"
    tag = f"heatmap:{site.pk}:{source}:{int(step.total_seconds())}:{kind}:{gpu_count}:{top_id}"
    chunks = _heatmap_chunks(first=first, end=end, step=step, source=source, settled=now - HEATMAP_SETTLED_AFTER) \
        if gpu_count else []
    settled = [(a, b) for a, b, done in chunks if done]
    # The settled part as a whole (flat Σ util × samples and Σ samples per cell): one cache read on a warm refresh
    # instead of a piece per day, rebuilt from the pieces when the range or the settled hour moves on.
    matrix_key = (f"{tag}:m:{int(first.timestamp())}:{int(settled[-1][1].timestamp())}:{len(labels)}x{width}"
                  if settled else None)
    cached = cache.get(matrix_key) if matrix_key else None
    if cached is not None:
        sums, counts = array("d", cached[0]), array("q", cached[1])
        if touch:
            cache.touch(matrix_key, HEATMAP_CACHE_S)
    else:
        sums, counts = array("d", bytes(8 * len(labels) * width)), array("q", bytes(8 * len(labels) * width))
        _heatmap_settled(sums, counts, tag=tag, site=site, source=source, by_node=by_node, step=step,
                         settled=settled, row_of=row_of, col_of=col_of, width=width)
        if matrix_key:
            cache.set(matrix_key, (sums.tobytes(), counts.tobytes()), HEATMAP_CACHE_S)
    for a, b, done in chunks:
        if not done:  # the unsettled tail: read on every refresh, so a new reading shows on the next one
            _fill(sums, counts, _heatmap_cells(site=site, source=source, by_node=by_node, start=a, end=b, step=step),
                  row_of=row_of, col_of=col_of, width=width)
    matrix = [[sums[i] / counts[i] if counts[i] else None for i in range(r * width, (r + 1) * width)]
              for r in range(len(labels))]
    return {"gpus": labels, "gpu_ids": [g[0] for g in gpus] if kind == "gpu" else [], "rows": kind,
            "gpu_count": gpu_count, "columns": columns, "step": step, "util_pct": matrix}


# The ranges whose heatmaps the pre-warm keeps cached (the range selector's presets beyond 3 h), and how far ahead of
# its own clock it also warms: the next run is at most this far away, so a range that moves on by a column (or a
# settled hour) in between is already cached when users ask. Data that ended more than `HEATMAP_SETTLED_AFTER` ago
# no longer changes (the rollups re-roll 10 minutes), so warming a minute early caches nothing that could change.
WARM_RANGES = (dt.timedelta(hours=24), dt.timedelta(days=7), dt.timedelta(days=30))
WARM_AHEAD = dt.timedelta(seconds=60)


def dashboard_cache_shared() -> bool:
    """Whether the default cache is shared by processes (Redis, Memcached, database, files): only then does a cache
    filled by a worker reach the web processes. The default local-memory cache is per process."""
    from django.conf import settings

    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    return not backend.endswith(("LocMemCache", "DummyCache"))


def site_heatmaps_warm(*, now: dt.datetime, sites: list[Site] | None = None,
                       ahead: dt.timedelta = WARM_AHEAD) -> int:
    """Compute the heatmap of every site with GPUs (or of `sites`) for the `WARM_RANGES` ending `now` and `now +
    ahead` (the interval of its runs), so the settled matrices and pieces users read are in the cache: a user's
    request then reads only the unsettled tail. Keys are per site (never per user; users read them only for sites
    `visible_to` them). Idempotent: a second run finds everything cached and renews the matrices' expiry. Returns
    the number of heatmaps computed."""
    sites = sites if sites is not None else list(Site.objects.filter(nodes__gpus__isnull=False).distinct())
    done = 0
    for site in sites:
        for at in (now, now + ahead):
            for span in WARM_RANGES:
                _site_heatmap(site=site, nodes=Node.objects.filter(site=site), gpus=Gpu.objects.filter(node__site=site),
                              start=at - span, end=at, now=at, touch=True)
                done += 1
    return done
