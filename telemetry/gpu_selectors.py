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
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import TruncHour

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
