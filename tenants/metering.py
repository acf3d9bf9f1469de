"""Attribution applied at metering time: hourly usage rollups + attribution rules → `TenantUsage`.

- One `TenantUsage` row per (engine series, UTC hour), copied from telemetry's hourly `UsageRollup`; the
  tenant is `resolve_tenant(rules of the endpoint, series labels, at=start of the hour)`. Tokens are integers,
  copied, never scaled. Raw facts (snapshots, deltas, rollups) are only read.
- `tenant_usage_refresh` recomputes a window (by default from the first day of the previous UTC month) and
  upserts on (series, bucket_start): running it twice changes nothing.
- An hour billed on an issued (or paid) invoice of its tenant keeps that tenant: a corrected rule re-meters
  only open periods. Its token counts still follow the rollup, so late usage shows up and the next invoice
  bills the difference as an adjustment.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from factory_portal.exceptions import ServiceError
from sites.models import Membership
from telemetry.models.metering import UsageBucket, UsageRollup
from tenants.choices import BILLED_STATUSES
from tenants.models import AttributionRule, Invoice, Tenant, TenantUsage
from tenants.models.scoping import api_key_tenant_id
from tenants.selectors import resolve_tenant

HOUR = dt.timedelta(hours=1)


def default_refresh_start(now: dt.datetime) -> dt.datetime:
    """The first instant of the previous UTC month: the periods that can still be open."""
    first = now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first - dt.timedelta(days=1)).replace(day=1)


def billed_periods() -> dict[int, list[tuple[dt.date, dt.date]]]:
    """tenant id → [(period_start, period_end)] of its issued or paid invoices."""
    out: dict[int, list[tuple[dt.date, dt.date]]] = defaultdict(list)
    for tenant_id, start, end in Invoice.objects.filter(status__in=BILLED_STATUSES).values_list(
            "tenant_id", "period_start", "period_end"):
        out[tenant_id].append((start, end))
    return out


def is_billed(periods: dict[int, list[tuple[dt.date, dt.date]]], tenant_id: int | None, at: dt.datetime) -> bool:
    if tenant_id is None:
        return False
    day = at.astimezone(dt.UTC).date()
    return any(start <= day < end for start, end in periods.get(tenant_id, ()))


@transaction.atomic
def tenant_usage_refresh(*, since: dt.datetime | None = None, until: dt.datetime | None = None,
                         now: dt.datetime | None = None) -> int:
    """Re-meter hours in [since, until) from the hourly rollups; returns the rows written (upserted)."""
    now = now or timezone.now()
    since = (since or default_refresh_start(now)).astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    rollups = UsageRollup.objects.filter(bucket=UsageBucket.HOUR, bucket_start__gte=since)
    if until is not None:
        rollups = rollups.filter(bucket_start__lt=until)
    rows = list(rollups.values("series_id", "endpoint_id", "model", "bucket_start", "prompt_tokens",
                               "generation_tokens", "series__labels"))
    if not rows:
        return 0
    endpoint_ids = {r["endpoint_id"] for r in rows}
    rules: dict[int, list[AttributionRule]] = defaultdict(list)
    for rule in AttributionRule.objects.filter(endpoint_id__in=endpoint_ids):
        rules[rule.endpoint_id].append(rule)
    existing = {
        (u.series_id, u.bucket_start): u.tenant_id
        for u in TenantUsage.objects.filter(series_id__in={r["series_id"] for r in rows}, bucket_start__gte=since)
        .only("series_id", "bucket_start", "tenant_id")
    }
    billed = billed_periods()
    out: list[TenantUsage] = []
    for r in rows:
        key = (r["series_id"], r["bucket_start"])
        before = existing.get(key)
        if is_billed(billed, before, r["bucket_start"]):
            tenant_id = before  # billed: the attribution it was invoiced under stays
        else:
            tenant_id = resolve_tenant(rules=rules[r["endpoint_id"]], labels=r["series__labels"] or {},
                                       at=r["bucket_start"])
        out.append(TenantUsage(series_id=r["series_id"], endpoint_id=r["endpoint_id"], model=r["model"],
                               bucket_start=r["bucket_start"], tenant_id=tenant_id,
                               prompt_tokens=r["prompt_tokens"], generation_tokens=r["generation_tokens"]))
    TenantUsage.objects.bulk_create(
        out, update_conflicts=True, unique_fields=["series", "bucket_start"],
        update_fields=["endpoint", "model", "tenant", "prompt_tokens", "generation_tokens", "metered_at"],
        batch_size=2000,
    )
    return len(out)


# ---------------------------------------------------------------- the usage API's `tenant` filter

def _is_partner_side(user) -> bool:
    return user.is_superuser or Membership.objects.filter(user_id=user.pk).exists()


def tenants_for_usage_filter(*, user, tenant: str) -> QuerySet[Tenant]:
    """The tenants whose usage the caller asked for and may see. `tenant` is a slug or an id; "" means the
    caller's own tenant (tenant people and API keys)."""
    visible = Tenant.objects.visible_to(user)
    if not tenant:
        if api_key_tenant_id(user) is None and _is_partner_side(user):
            return Tenant.objects.none()  # partner staff name the tenant they want
        return visible if api_key_tenant_id(user) is not None else visible.filter(memberships__user_id=user.pk)
    if tenant.isdigit():
        return visible.filter(Q(pk=int(tenant)) | Q(slug=tenant))
    return visible.filter(slug=tenant)


def usage_tenant_filter(qs: QuerySet[UsageRollup], tenant: str, user) -> QuerySet[UsageRollup]:
    """Registered with telemetry (`register_usage_tenant_filter`): rollups attributed to the tenant(s).

    An hourly row is kept when its (series, hour) is attributed to the tenant. A daily row is kept only when
    every metered hour of that series on that day is attributed to the tenant, so a day on which a rule
    changed never shows another tenant's tokens (ask for `bucket=hour` to see that day exactly).
    """
    tenants = tenants_for_usage_filter(user=user, tenant=tenant)
    if tenant and not tenants.exists():
        # The same answer for a tenant that does not exist and one of another partner: nothing leaks.
        raise ServiceError(f"No tenant {tenant[:80]!r} among the tenants you can see.", field="tenant")
    mine = TenantUsage.objects.filter(series_id=OuterRef("series_id"), tenant__in=tenants)
    hourly = mine.filter(bucket_start=OuterRef("bucket_start"))
    in_day = Q(bucket_start__gte=OuterRef("bucket_start"), bucket_start__lt=OuterRef("bucket_start") + dt.timedelta(
        days=1))
    day_mine = mine.filter(in_day)
    day_other = TenantUsage.objects.filter(in_day, series_id=OuterRef("series_id")).exclude(tenant__in=tenants)
    return qs.filter(
        (Q(bucket=UsageBucket.HOUR) & Exists(hourly))
        | (Q(bucket=UsageBucket.DAY) & Exists(day_mine) & ~Exists(day_other))
    )
