"""Reads of metering for the API and dashboards. Every function scopes through `visible_to(user)`.

Units: tokens are counts; `*_per_s` are tokens per second averaged over the bucket (bucket tokens ÷ bucket
seconds); latencies are seconds (`ttft_mean_s` = mean time to first token, `itl_mean_s` = mean inter-token
latency, each = Σ observed seconds ÷ observations in the bucket, None when nothing was observed);
`kv_cache_usage` is a fraction 0..1; times are UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.db.models import (
    Avg,
    Count,
    DateTimeField,
    DurationField,
    F,
    Func,
    Max,
    Min,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import TruncDay, TruncHour, TruncMinute

from factory_portal.exceptions import ServiceError
from sites.models import ServingEndpoint
from telemetry.models.metering import CounterSnapshot, EngineSeries, UsageBucket, UsageDelta, UsageRollup

User = AbstractBaseUser | AnonymousUser
BUCKET_SECONDS = {UsageBucket.HOUR: 3600, UsageBucket.DAY: 86400}

# The tenants app registers a filter (rollups, tenant value, user) → rollups from its attribution rules;
# telemetry never imports tenants (DESIGN.md §3).
TenantFilter = Callable[[QuerySet, str, User], QuerySet]
_tenant_filter: TenantFilter | None = None


def register_usage_tenant_filter(fn: TenantFilter | None) -> None:
    global _tenant_filter
    _tenant_filter = fn


def _is_tenant_side(user: User) -> bool:
    """An API key of a tenant, or a person who is no partner's member (and no superuser)."""
    if not user.is_authenticated:
        return False
    if getattr(user, "api_key_tenant_id", None) is not None:
        return True
    from sites.models import Membership

    return not user.is_superuser and not Membership.objects.filter(user_id=user.pk).exists()


def usage_rollups(*, user: User, bucket: str = UsageBucket.HOUR, site: str | None = None,
                  endpoint_id: int | None = None, model: str | None = None, tenant: str | None = None,
                  start: dt.datetime | None = None, end: dt.datetime | None = None) -> QuerySet[UsageRollup]:
    """Rollup rows the user may see, filtered. `start` inclusive, `end` exclusive, on the bucket start."""
    if bucket not in BUCKET_SECONDS:
        raise ServiceError("bucket must be 'hour' or 'day'.", field="bucket")
    if start is not None and end is not None and end <= start:
        raise ServiceError("end must be after start.", field="end")
    if tenant or (_tenant_filter is not None and _is_tenant_side(user)):
        if _tenant_filter is None:
            raise ServiceError("Filtering by tenant needs the tenants app's attribution rules, which are not "
                               "installed yet.", field="tenant")
        # Attributed usage is scoped by the tenants app (the tenants the caller may see), not by partner
        # membership: tenant people and tenant API keys are nobody's partner members. "" = the caller's own.
        qs = _tenant_filter(UsageRollup.objects.all(), tenant or "", user)
    else:
        qs = UsageRollup.objects.visible_to(user)
    qs = qs.filter(bucket=bucket)
    if site:
        qs = qs.filter(endpoint__site__slug=site)
    if endpoint_id is not None:
        qs = qs.filter(endpoint_id=endpoint_id)
    if model:
        qs = qs.filter(model=model)
    if start is not None:
        qs = qs.filter(bucket_start__gte=start)
    if end is not None:
        qs = qs.filter(bucket_start__lt=end)
    return qs


def usage_rows(**filters) -> QuerySet:
    """Usage per (bucket start, endpoint, model), summed over the model's attribution labels."""
    return (
        usage_rollups(**filters)
        .values("bucket_start", "endpoint_id", "model")
        .annotate(
            endpoint_name=F("endpoint__name"), site=F("endpoint__site__slug"),
            prompt_tokens=Sum("prompt_tokens"), generation_tokens=Sum("generation_tokens"),
            requests_ok=Sum("requests_ok"), requests_failed=Sum("requests_failed"),
        )
        .order_by("bucket_start", "endpoint_id", "model")
    )


def tokens_per_second_series(*, user: User, bucket: str = UsageBucket.HOUR, site: str | None = None,
                             endpoint_id: int | None = None, model: str | None = None,
                             start: dt.datetime | None = None, end: dt.datetime | None = None) -> list[dict]:
    """[{bucket_start, prompt_tokens_per_s, generation_tokens_per_s, ttft_mean_s, itl_mean_s}] over the filter."""
    seconds = BUCKET_SECONDS[bucket] if bucket in BUCKET_SECONDS else 3600
    rows = (
        usage_rollups(user=user, bucket=bucket, site=site, endpoint_id=endpoint_id, model=model, start=start,
                      end=end)
        .values("bucket_start")
        .annotate(p=Sum("prompt_tokens"), g=Sum("generation_tokens"), ts=Sum("ttft_sum_s"), tc=Sum("ttft_count"),
                  its=Sum("itl_sum_s"), ic=Sum("itl_count"))
        .order_by("bucket_start")
    )
    return [
        {
            "bucket_start": r["bucket_start"],
            "prompt_tokens_per_s": r["p"] / seconds,
            "generation_tokens_per_s": r["g"] / seconds,
            "ttft_mean_s": r["ts"] / r["tc"] if r["tc"] else None,
            "itl_mean_s": r["its"] / r["ic"] if r["ic"] else None,
        }
        for r in rows
    ]


def endpoint_health_list(*, user: User, site: str | None = None) -> QuerySet[ServingEndpoint]:
    """Endpoints with health, last_error, last_scraped_at and detected_engine, for status badges."""
    qs = ServingEndpoint.objects.visible_to(user).select_related("site").only(
        "id", "name", "site__slug", "site__name", "engine", "detected_engine", "health", "last_error",
        "last_scraped_at", "enabled",
    )
    return qs.filter(site__slug=site) if site else qs


def series_latest(*, user: User, endpoint_id: int) -> list[dict]:
    """Latest gauges per (model, attribution labels) of an endpoint, summed over split labels (vLLM engines):
    running and waiting requests (sums), KV-cache use (mean fraction), the latest scrape time."""
    newest = CounterSnapshot.objects.filter(series_id=OuterRef("pk")).order_by("-scraped_at")
    rows = (
        EngineSeries.objects.visible_to(user).filter(endpoint_id=endpoint_id)
        .annotate(
            scraped_at=Subquery(newest.values("scraped_at")[:1]), running=Subquery(newest.values("running")[:1]),
            waiting=Subquery(newest.values("waiting")[:1]),
            kv_cache_usage=Subquery(newest.values("kv_cache_usage")[:1]),
        )
        .values("id", "model", "labels", "scraped_at", "running", "waiting", "kv_cache_usage")
    )
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], tuple(sorted(row["labels"].items()))), []).append(row)
    out = []
    for parts in groups.values():
        kv = [p["kv_cache_usage"] for p in parts if p["kv_cache_usage"] is not None]
        times = [p["scraped_at"] for p in parts if p["scraped_at"] is not None]
        out.append({
            "ids": [p["id"] for p in parts], "model": parts[0]["model"], "labels": parts[0]["labels"],
            "scraped_at": max(times) if times else None,
            "running": _sum_present(p["running"] for p in parts),
            "waiting": _sum_present(p["waiting"] for p in parts),
            "kv_cache_usage": sum(kv) / len(kv) if kv else None,
        })
    return out


def _sum_present(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


# --- Dashboards (issue 7) ----------------------------------------------------------------------------------------

# Up to this span charts read usage deltas binned per minute (one endpoint scraped every 15 s gives 4 rows a
# minute); beyond, hourly rollups (≤ 1,440 points for 60 days), then daily ones.
DELTA_RESOLUTION_MAX = dt.timedelta(hours=6)
LIVE_TOKENS_WINDOW = dt.timedelta(minutes=5)


def usage_plan(*, start: dt.datetime, end: dt.datetime) -> tuple[str, int]:
    """(source, bucket seconds) a chart over [start, end) reads: "delta" per minute, "hour" or "day" rollups."""
    span = end - start
    if span <= DELTA_RESOLUTION_MAX:
        return "delta", 60
    if span <= dt.timedelta(days=60):
        return "hour", 3600
    return "day", 86400


# A chart reads at most about this many buckets a series: a 30-day range bins hourly rollups to 3 hours in SQL
# (240 points) instead of shipping 720 hourly points per endpoint and per figure (docs/dashboards.md).
USAGE_MAX_BUCKETS = 240
BIN_ORIGIN = dt.datetime(2000, 1, 3, tzinfo=dt.UTC)  # midnight UTC: bins of whole hours line up with days


def usage_bin_hours(*, start: dt.datetime, end: dt.datetime) -> int:
    """Hours per bucket when a chart reads hourly rollups: 1 up to `USAGE_MAX_BUCKETS` hours, else the smallest
    divisor of a day (2, 3, 4, 6, 8, 12, 24) that keeps the series within it."""
    hours = -(-(end - start) // dt.timedelta(hours=USAGE_MAX_BUCKETS))
    return next((h for h in (1, 2, 3, 4, 6, 8, 12, 24) if h >= hours), 24)


def usage_buckets(*, user: User, start: dt.datetime, end: dt.datetime, by: tuple[str, ...] = (),
                  site_ids: list[int] | None = None, endpoint_id: int | None = None) -> list[dict]:
    """Usage over [start, end) in buckets sized by `usage_plan`, grouped by `by` ⊆ ("site_id", "endpoint_id",
    "model"), oldest first. Each row: the group keys, `bucket`, `seconds`, `prompt_tokens`, `generation_tokens`,
    `requests_ok`, `requests_failed`, `prompt_tokens_per_s`, `generation_tokens_per_s`, `ttft_mean_s`,
    `itl_mean_s` (None when nothing was observed). Summed over a model's attribution labels."""
    source, seconds = usage_plan(start=start, end=end)
    bin_hours = usage_bin_hours(start=start, end=end) if source == "hour" and connection.vendor == "postgresql" else 1
    if source == "delta":
        qs = UsageDelta.objects.visible_to(user).filter(interval_end__gte=start, interval_end__lt=end)
        bucket = TruncMinute("interval_end", tzinfo=dt.UTC)
        fields = {"site_id": F("endpoint__site_id"), "endpoint_id": F("endpoint_id"), "model": F("series__model")}
    else:
        if bin_hours > 1:
            # Whole bins only at the start (a bin cut by the range start would read as a dip), binned in SQL.
            seconds = bin_hours * 3600
            step = dt.timedelta(seconds=seconds)
            start = BIN_ORIGIN + -(-(start - BIN_ORIGIN) // step) * step
            bucket = Func(Value(step, output_field=DurationField()), F("bucket_start"),
                          Value(BIN_ORIGIN, output_field=DateTimeField()), function="date_bin",
                          output_field=DateTimeField())
        else:
            bucket = F("bucket_start")
        qs = UsageRollup.objects.visible_to(user).filter(bucket=source, bucket_start__gte=start, bucket_start__lt=end)
        fields = {"site_id": F("endpoint__site_id"), "endpoint_id": F("endpoint_id"), "model": F("model")}
    if site_ids is not None:
        qs = qs.filter(endpoint__site_id__in=site_ids)
    if endpoint_id is not None:
        qs = qs.filter(endpoint_id=endpoint_id)
    keys = {f"k_{name}": fields[name] for name in by}
    rows = (qs.annotate(b=bucket, **keys).values("b", *keys)
            .annotate(p=Sum("prompt_tokens"), g=Sum("generation_tokens"), ok=Sum("requests_ok"),
                      failed=Sum("requests_failed"), ts=Sum("ttft_sum_s"), tc=Sum("ttft_count"), its=Sum("itl_sum_s"),
                      ic=Sum("itl_count"))
            .order_by("b", *keys))
    out = []
    for r in rows:
        # The bin in progress is divided by the time it has covered so far, not by its whole width.
        span = seconds if bin_hours == 1 else max(1.0, min(float(seconds), (end - r["b"]).total_seconds()))
        out.append({**{name: r[f"k_{name}"] for name in by}, "bucket": r["b"], "seconds": seconds,
                    "prompt_tokens": r["p"], "generation_tokens": r["g"], "requests_ok": r["ok"],
                    "requests_failed": r["failed"], "prompt_tokens_per_s": r["p"] / span,
                    "generation_tokens_per_s": r["g"] / span, "ttft_mean_s": r["ts"] / r["tc"] if r["tc"] else None,
                    "itl_mean_s": r["its"] / r["ic"] if r["ic"] else None})
    return out


def endpoints_usage_now(*, user: User, site_ids: list[int], now: dt.datetime,
                        window: dt.timedelta = LIVE_TOKENS_WINDOW) -> dict[int, dict]:
    """Per endpoint, from the usage deltas that ended in the last `window`: `site_id`, `tokens_per_s` (prompt +
    generated, each series' tokens ÷ the time its deltas span, summed over series), `ttft_mean_s`, `itl_mean_s`,
    `requests_ok`, `requests_failed`. Endpoints without deltas in the window are absent."""
    rows = (UsageDelta.objects.visible_to(user)
            .filter(endpoint__site_id__in=site_ids, interval_end__gt=now - window, interval_end__lte=now)
            .values("series_id", "endpoint_id", "endpoint__site_id")
            .annotate(tokens=Sum(F("prompt_tokens") + F("generation_tokens")), first=Min("interval_start"),
                      last=Max("interval_end"), ok=Sum("requests_ok"), failed=Sum("requests_failed"),
                      ts=Sum("ttft_sum_s"), tc=Sum("ttft_count"), its=Sum("itl_sum_s"), ic=Sum("itl_count")))
    out: dict[int, dict] = {}
    for r in rows:
        e = out.setdefault(r["endpoint_id"], {"site_id": r["endpoint__site_id"], "tokens_per_s": 0.0,
                                              "requests_ok": 0, "requests_failed": 0, "_ts": 0.0, "_tc": 0,
                                              "_its": 0.0, "_ic": 0})
        span = (r["last"] - r["first"]).total_seconds()
        if span > 0:
            e["tokens_per_s"] += r["tokens"] / span
        e["requests_ok"] += r["ok"]
        e["requests_failed"] += r["failed"]
        e["_ts"] += r["ts"]
        e["_tc"] += r["tc"]
        e["_its"] += r["its"]
        e["_ic"] += r["ic"]
    for e in out.values():
        ts, tc, its, ic = e.pop("_ts"), e.pop("_tc"), e.pop("_its"), e.pop("_ic")
        e["ttft_mean_s"] = ts / tc if tc else None
        e["itl_mean_s"] = its / ic if ic else None
    return out


def endpoint_scrape_buckets(*, user: User, endpoint_id: int, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """Health history: per bucket (`usage_plan`'s size), the scrapes that returned counters (distinct delta ends).
    A failed or unreachable scrape writes nothing, so a dip below the expected count is the endpoint's downtime."""
    source, seconds = usage_plan(start=start, end=end)
    trunc = TruncMinute if seconds == 60 else TruncHour if seconds == 3600 else TruncDay
    rows = (UsageDelta.objects.visible_to(user)
            .filter(endpoint_id=endpoint_id, interval_end__gte=start, interval_end__lt=end)
            .annotate(b=trunc("interval_end", tzinfo=dt.UTC)).values("b")
            .annotate(scrapes=Count("interval_end", distinct=True)).order_by("b"))
    return [{"bucket": r["b"], "seconds": seconds, "scrapes": r["scrapes"]} for r in rows]


def endpoint_gauge_buckets(*, user: User, endpoint_id: int, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """Running and waiting requests and KV-cache use (fraction) per minute over [start, end), summed over the
    endpoint's series (means within the minute); read from snapshots, so callers keep the range short."""
    per_series = (CounterSnapshot.objects
                  .filter(series__in=EngineSeries.objects.visible_to(user).filter(endpoint_id=endpoint_id),
                          scraped_at__gte=start, scraped_at__lt=end)
                  .annotate(b=TruncMinute("scraped_at", tzinfo=dt.UTC)).values("b", "series_id")
                  .annotate(running=Avg("running"), waiting=Avg("waiting"), kv=Avg("kv_cache_usage")))
    buckets: dict[dt.datetime, dict] = {}
    for r in per_series:
        b = buckets.setdefault(r["b"], {"bucket": r["b"], "running": None, "waiting": None, "kv_cache_usage": None})
        for key, value in (("running", r["running"]), ("waiting", r["waiting"])):
            if value is not None:
                b[key] = (b[key] or 0.0) + value
        if r["kv"] is not None:
            b["kv_cache_usage"] = max(b["kv_cache_usage"] or 0.0, r["kv"])
    return [buckets[k] for k in sorted(buckets)]
