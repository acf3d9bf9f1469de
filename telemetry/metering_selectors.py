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
from django.db.models import F, OuterRef, QuerySet, Subquery, Sum

from factory_portal.exceptions import ServiceError
from sites.models import ServingEndpoint
from telemetry.models.metering import CounterSnapshot, EngineSeries, UsageBucket, UsageRollup

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
