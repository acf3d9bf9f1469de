"""Reads of GPU telemetry for dashboards and the API. Every query goes through `visible_to(user)`.

Units are in the names: `util_pct` (0–100, % of time a kernel ran, NVML `utilization.gpu`), `power_w`
(watts), `energy_j` (joules, Decimal with 3 places), `memory_*_bytes`, `temperature_c`. Buckets are UTC
datetimes at the start of the minute/hour. Series come from rollups, never from raw samples over long
ranges; `gpu_latest_readings` reads raw samples, but only the last few minutes.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.db.models import Avg, Count, DateTimeField, DurationField, F, Func, IntegerField, Max, Q, Sum, Value
from django.db.models.functions import Cast, TruncDay, TruncHour

from factory_portal.crypto import hash_token
from sites.models import Gpu, Node, Site
from telemetry.models import GpuRollup1h, GpuRollup1m, GpuSample, NodeGpuCollector, SiteGpuRollup1m

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
LIVE_WINDOW_POLLS = 3
# A heatmap keeps at most about this many time columns; rows are GPUs.
HEATMAP_MAX_COLUMNS = 180
# ... and at most about this many cells: a 1,000-GPU site gets ~36 columns, still more than a pixel row per GPU
# (the JSON stays ~200 KB, and the browser draws it in tens of milliseconds).
HEATMAP_MAX_CELLS = 36_000
HEATMAP_CACHE_S = 600


def sites_gpu_now(*, user: User, sites: list[Site], now: dt.datetime) -> dict[int, dict]:
    """Per site, the GPUs' readings of the last `LIVE_WINDOW_POLLS` poll intervals (raw samples, seconds only).

    Returns `{site_id: {"gpus_reporting", "util_mean_pct", "power_w", "last_ts"}}`: `util_mean_pct` is the mean
    over those readings that had utilization (None if none did), `power_w` the sum over GPUs of each GPU's mean
    draw in the window (None if no GPU reported power). Sites without readings are absent.
    """
    if not sites:
        return {}
    window = Q()
    for s in sites:
        window |= Q(gpu__node__site_id=s.pk, ts__gte=now - dt.timedelta(seconds=LIVE_WINDOW_POLLS *
                                                                        s.gpu_poll_interval_s))
    rows = (GpuSample.objects.visible_to(user).filter(window, ts__lte=now)
            .values("gpu_id", "gpu__node__site_id")
            .annotate(util_sum=Sum("util_pct"), util_n=Count("util_pct"), power=Avg("power_w"), last=Max("ts")))
    out: dict[int, dict] = {}
    for r in rows:
        site = out.setdefault(r["gpu__node__site_id"], {"gpus_reporting": 0, "_util_sum": 0, "_util_n": 0,
                                                        "power_w": None, "last_ts": None})
        site["gpus_reporting"] += 1
        site["_util_sum"] += r["util_sum"] or 0
        site["_util_n"] += r["util_n"]
        if r["power"] is not None:
            site["power_w"] = (site["power_w"] or 0.0) + r["power"]
        site["last_ts"] = max(filter(None, [site["last_ts"], r["last"]]))
    for site in out.values():
        n = site.pop("_util_n")
        util_sum = site.pop("_util_sum")
        site["util_mean_pct"] = util_sum / n if n else None
    return out


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


def sites_gpu_buckets(*, user: User, site_ids: list[int], start: dt.datetime, end: dt.datetime,
                      resolution: str | None = None) -> dict[int, list[dict]]:
    """The sites' GPU fleets over [start, end), aggregated in the database, one list per site, oldest first.

    Keys: `bucket`, `util_mean_pct` (sample-weighted mean), `power_mean_w` (mean of the minutes' site draw),
    `power_max_w` (highest minute upper bound), `energy_j` (Decimal J or None), `energy_estimated`.
    `resolution`: "1m" up to 30 h, "1h" up to 60 days, else "1d" — at most ~1,800 buckets a series.
    """
    if resolution is None:
        span = end - start
        resolution = "1m" if span <= MINUTE_RESOLUTION_MAX else "1h" if span <= dt.timedelta(days=60) else "1d"
    qs = (SiteGpuRollup1m.objects.visible_to(user).filter(site_id__in=site_ids, bucket__gte=start, bucket__lt=end)
          .annotate(b=_bucket_expr("bucket", resolution)).values("site_id", "b")
          .annotate(weighted=Sum(F("util_mean_pct") * F("util_samples")), n=Sum("util_samples"),
                    power=Avg("power_mean_w"), power_max=Max("power_max_w"), energy=Sum("energy_j"),
                    estimated=Max(Cast("energy_estimated", IntegerField())))
          .order_by("site_id", "b"))
    out: dict[int, list[dict]] = {i: [] for i in site_ids}
    for r in qs:
        out[r["site_id"]].append({
            "bucket": r["b"], "util_mean_pct": r["weighted"] / r["n"] if r["n"] else None,
            "power_mean_w": r["power"], "power_max_w": r["power_max"], "energy_j": r["energy"],
            "energy_estimated": bool(r["estimated"]),
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
    whole hours from hourly rollups beyond."""
    span = end - start
    columns = max(24, min(HEATMAP_MAX_COLUMNS, HEATMAP_MAX_CELLS // max(1, gpus)))
    if span <= dt.timedelta(hours=3):
        return "1m", dt.timedelta(minutes=max(1, -(-span // dt.timedelta(minutes=columns))))
    hours = max(1, -(-span // dt.timedelta(hours=columns)))
    # Columns divide a day (or are whole days), so they line up with midnight UTC and cache by day.
    hours = next((h for h in (1, 2, 3, 4, 6, 8, 12, 24) if h >= hours), -(-hours // 24) * 24)
    return "1h", dt.timedelta(hours=hours)


def _heatmap_cells(*, model, gpu_ids: list[int], start: dt.datetime, end: dt.datetime,
                   step: dt.timedelta) -> list[tuple[int, dt.datetime, float | None]]:
    """(gpu_id, column start, sample-weighted mean util %) over [start, end), binned in the database."""
    qs = model.objects.filter(gpu_id__in=gpu_ids, bucket__gte=start, bucket__lt=end)
    if step in (dt.timedelta(minutes=1), dt.timedelta(hours=1)):
        rows = qs.values_list("gpu_id", "bucket", "util_mean_pct")
        return list(rows)
    if connection.vendor == "postgresql":
        col = Func(Cast(Value(f"{int(step.total_seconds())} seconds"), DurationField()), F("bucket"),
                   Value(BIN_ORIGIN, output_field=DateTimeField()), function="date_bin", output_field=DateTimeField())
    else:  # SQLite (single-machine default): whole hours/days only
        col = TruncDay("bucket", tzinfo=dt.UTC) if step >= dt.timedelta(days=1) else TruncHour("bucket", tzinfo=dt.UTC)
    rows = (qs.annotate(col=col).values("gpu_id", "col")
            .annotate(weighted=Sum(F("util_mean_pct") * F("util_samples")), n=Sum("util_samples"))
            .values_list("gpu_id", "col", "weighted", "n"))
    return [(g, c, w / n if n else None) for g, c, w, n in rows]


BIN_ORIGIN = dt.datetime(2000, 1, 3, tzinfo=dt.UTC)  # a Monday, midnight UTC: columns align to whole hours/days


def _floor(value: dt.datetime, step: dt.timedelta) -> dt.datetime:
    return BIN_ORIGIN + ((value - BIN_ORIGIN) // step) * step


def site_gpu_heatmap_binned(*, user: User, site: Site, start: dt.datetime, end: dt.datetime,
                            now: dt.datetime | None = None) -> dict:
    """GPU × time utilization for the site page's heatmap, at most ~`HEATMAP_MAX_COLUMNS` columns.

    Returns `{"gpus": ["host/gpu0", ...], "gpu_ids", "columns": [column start, ...], "step": timedelta,
    "util_pct": [[mean % or None per column] per GPU]}` (None = no reading, never 0).

    Columns that ended more than an hour before `now` are read once and cached (`HEATMAP_CACHE_S`) per
    (site, resolution, step, column day): late rollups of an old hour are rare, and a 15-second refresh of a
    30-day heatmap then reads only today's rows.
    """
    from django.core.cache import cache

    now = now or end
    gpus = list(Gpu.objects.visible_to(user).filter(node__site=site).order_by("node__hostname", "index")
                .values_list("pk", "node__hostname", "index"))
    gpu_ids = [pk for pk, _, _ in gpus]
    resolution, step = heatmap_plan(start=start, end=end, gpus=len(gpus))
    model = GpuRollup1m if resolution == "1m" else GpuRollup1h
    first = _floor(start, step)
    columns: list[dt.datetime] = []
    c = first
    while c < end:
        columns.append(c)
        c += step
    col_of = {col: i for i, col in enumerate(columns)}
    row_of = {pk: i for i, pk in enumerate(gpu_ids)}
    matrix: list[list[float | None]] = [[None] * len(columns) for _ in gpus]

    def fill(cells) -> None:
        for gpu_id, col, util in cells:
            if gpu_id in row_of and col in col_of:
                matrix[row_of[gpu_id]][col_of[col]] = util

    # Chunks of whole days (aligned to midnight UTC, so to columns) that settled an hour ago come from the cache;
    # the rest (today, and the first partial day of the range) is read live.
    settled_until = _floor(now - dt.timedelta(hours=1), dt.timedelta(days=1)) if resolution == "1h" else first
    chunk = max(step, dt.timedelta(days=1))
    cursor = first
    while cursor < end and gpu_ids:
        upto = min(_floor(cursor, chunk) + chunk, end)
        if upto <= settled_until:
            key = (f"heatmap:{site.pk}:{resolution}:{int(step.total_seconds())}:{int(cursor.timestamp())}:"
                   f"{int(upto.timestamp())}:{len(gpu_ids)}:{max(gpu_ids)}")
            cells = cache.get(key)
            if cells is None:
                cells = _heatmap_cells(model=model, gpu_ids=gpu_ids, start=cursor, end=upto, step=step)
                cache.set(key, cells, HEATMAP_CACHE_S)
        else:
            cells = _heatmap_cells(model=model, gpu_ids=gpu_ids, start=cursor, end=upto, step=step)
        fill(cells)
        cursor = upto
    return {"gpus": [f"{host}/gpu{index}" for _, host, index in gpus], "gpu_ids": gpu_ids, "columns": columns,
            "step": step, "util_pct": matrix}
