"""Reads behind the unit economics: telemetry rollups, attributed usage, prices and allocations, per site,
tenant and portfolio. Scoping: sites come from `Site.objects.visible_to(user)`, tenants from
`Tenant.objects.visible_to(user)`; cost and margin are computed only for partner staff (callers check).

Figures are computed by the pure functions of tenants/economics.py.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.db.models import Count, F, Max, Min, Q, Sum
from django.shortcuts import get_object_or_404

from factory_portal.exceptions import ServiceError
from sites.models import Gpu, Site
from telemetry.models import GpuRollup1m, SiteGpuRollup1m
from tenants import economics
from tenants.choices import TenantStatus, TokenKind
from tenants.models import Allocation, PriceRate, Tenant, TenantUsage
from tenants.pricing import UsageItem, month_of, price_items, rate_bands

User = AbstractBaseUser | AnonymousUser
HOUR_S = Decimal(3600)
# Stated what-if defaults when a site has no power readings to derive idle and max draw from (an H100 SXM).
DEFAULT_IDLE_POWER_W = Decimal(100)
DEFAULT_MAX_POWER_W = Decimal(700)


def check_range(start: dt.datetime, end: dt.datetime) -> None:
    if end <= start:
        raise ServiceError("end must be after start.", field="end")
    if end - start > dt.timedelta(days=400):
        raise ServiceError("A period can span at most 400 days.", field="end")


def _hours(start: dt.datetime, end: dt.datetime) -> Decimal:
    return Decimal((end - start).total_seconds()) / HOUR_S


def _overlap_hours(a0: dt.datetime, a1: dt.datetime | None, start: dt.datetime, end: dt.datetime) -> Decimal:
    lo, hi = max(a0, start), min(a1 or end, end)
    return _hours(lo, hi) if hi > lo else Decimal(0)


# ---------------------------------------------------------------- revenue

@dataclass
class PricedUsage:
    """Attributed usage rows of a window with their revenue (None for unpriced models)."""

    rows: list[dict]  # TenantUsage values + "input_revenue", "output_revenue", "site_id", "currency"
    unpriced_models: set[tuple[int, str]]


def _bands_lookup(tenant_ids: set[int]):
    tenants = {t.pk: t for t in Tenant.objects.filter(pk__in=tenant_ids).select_related("price_plan")}
    plan_ids = {t.price_plan_id for t in tenants.values() if t.price_plan_id}
    rates: dict[int, dict[str, PriceRate]] = defaultdict(dict)
    for rate in PriceRate.objects.filter(plan_id__in=plan_ids).prefetch_related("tiers"):
        rates[rate.plan_id][rate.model] = rate
    cache: dict[tuple, list | None] = {}

    def bands_for(tenant_id: int, model: str, kind: str):
        key = (tenant_id, model, kind)
        if key not in cache:
            plan_id = tenants[tenant_id].price_plan_id
            plan_rates = rates.get(plan_id, {}) if plan_id else {}
            rate = plan_rates.get(model) or plan_rates.get("*")
            cache[key] = rate_bands(rate, kind) if rate is not None else None
        return cache[key]

    return bands_for, tenants


def priced_usage(*, tenant_ids: set[int], start: dt.datetime, end: dt.datetime) -> PricedUsage:
    """Usage of these tenants in [start, end), priced by each tenant's plan with tiers counted from the first
    day of `start`'s month (so the tier position of the first hour is right)."""
    if not tenant_ids:
        return PricedUsage([], set())
    month_start = dt.datetime.combine(month_of(start), dt.time(), tzinfo=dt.UTC)
    rows = list(
        TenantUsage.objects.filter(tenant_id__in=tenant_ids, bucket_start__gte=month_start, bucket_start__lt=end)
        .values("pk", "tenant_id", "endpoint_id", "model", "bucket_start", "prompt_tokens", "generation_tokens",
                site_id=F("endpoint__site_id"))
    )
    bands_for, tenants = _bands_lookup(tenant_ids)
    items = []
    for r in rows:
        items.append(UsageItem((r["pk"], TokenKind.INPUT), r["tenant_id"], r["model"], TokenKind.INPUT,
                               r["bucket_start"], r["prompt_tokens"]))
        items.append(UsageItem((r["pk"], TokenKind.OUTPUT), r["tenant_id"], r["model"], TokenKind.OUTPUT,
                               r["bucket_start"], r["generation_tokens"]))
    revenue = {p.item.key: p.revenue for p in price_items(items, bands_for=bands_for)}
    unpriced: set[tuple[int, str]] = set()
    out = []
    for r in rows:
        if r["bucket_start"] < start:
            continue
        r["input_revenue"] = revenue[(r["pk"], TokenKind.INPUT)]
        r["output_revenue"] = revenue[(r["pk"], TokenKind.OUTPUT)]
        plan = tenants[r["tenant_id"]].price_plan
        r["currency"] = plan.currency if plan else None
        if r["input_revenue"] is None and (r["prompt_tokens"] or r["generation_tokens"]):
            unpriced.add((r["tenant_id"], r["model"]))
        out.append(r)
    return PricedUsage(out, unpriced)


def _revenue_of(row: dict) -> Decimal:
    return (row["input_revenue"] or Decimal(0)) + (row["output_revenue"] or Decimal(0))


# ---------------------------------------------------------------- sites

def site_get(*, user: User, site_id: int) -> Site:
    return get_object_or_404(Site.objects.visible_to(user), pk=site_id)


def site_cost_inputs(site: Site) -> economics.SiteCostInputs:
    return economics.SiteCostInputs(
        currency=site.currency, pue=site.pue, electricity_price_per_kwh=site.electricity_price_per_kwh,
        capex_per_gpu=site.capex_per_gpu, amortization_months=site.amortization_months,
        opex_per_gpu_hour=site.opex_per_gpu_hour,
    )


def site_gpu_hours(*, site: Site, start: dt.datetime, end: dt.datetime) -> tuple[int, Decimal]:
    """(GPUs, GPU-hours): every GPU of the site counts from when it was registered (capex runs regardless).

    Summed in SQL on PostgreSQL (exact: `EXTRACT(EPOCH …)` of an interval is a numeric to the microsecond): the
    cards of a 9,000-GPU site ask every minute, and reading 9,000 timestamps cost ~100 ms."""
    gpus = Gpu.objects.filter(node__site=site)
    if connection.vendor != "postgresql":
        created = list(gpus.values_list("created_at", flat=True))
        return len(created), sum((_overlap_hours(c, None, start, end) for c in created), Decimal(0))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*), COALESCE(SUM(GREATEST(0, EXTRACT(EPOCH FROM %s::timestamptz - GREATEST(g.created_at, "
            "%s::timestamptz)))), 0) FROM sites_gpu g JOIN sites_node n ON n.id = g.node_id WHERE n.site_id = %s",
            [end, start, site.pk])
        count, seconds = cursor.fetchone()
    return count, Decimal(seconds) / HOUR_S


def site_allocated_gpu_hours(*, site: Site, start: dt.datetime, end: dt.datetime) -> Decimal:
    """GPU-hours held by approved, unsuspended tenants: whole GPUs count 1, MIG slices compute_slices ÷ 7."""
    allocations = Allocation.objects.filter(
        Q(gpu__node__site=site) | Q(mig_device__gpu__node__site=site),
        tenant__status=TenantStatus.APPROVED, tenant__suspended_at__isnull=True, starts_at__lt=end,
    ).filter(Q(ends_at__isnull=True) | Q(ends_at__gt=start)).select_related("mig_device")
    total = Decimal(0)
    for a in allocations:
        weight = Decimal(1) if a.gpu_id else Decimal(a.mig_device.compute_slices) / 7
        total += weight * _overlap_hours(a.starts_at, a.ends_at, start, end)
    return total


def site_energy_and_util(*, site: Site, start: dt.datetime, end: dt.datetime) -> dict:
    agg = SiteGpuRollup1m.objects.filter(site=site, bucket__gte=start, bucket__lt=end).aggregate(
        energy=Sum("energy_j"), estimated=Count("pk", filter=Q(energy_estimated=True)),
        util_weighted=Sum(F("util_mean_pct") * F("util_samples")), util_samples=Sum("util_samples"))
    return {
        "energy_j": agg["energy"],
        "estimated": bool(agg["estimated"]),
        "util_mean_pct": agg["util_weighted"] / agg["util_samples"] if agg["util_samples"] else None,
    }


def site_tokens(*, site: Site, start: dt.datetime, end: dt.datetime) -> tuple[int, int]:
    """Input and output tokens served at the site's endpoints (attributed to a tenant or not)."""
    agg = TenantUsage.objects.filter(endpoint__site=site, bucket_start__gte=start, bucket_start__lt=end).aggregate(
        p=Sum("prompt_tokens"), g=Sum("generation_tokens"))
    return agg["p"] or 0, agg["g"] or 0


def _site_tenant_ids(site: Site, start: dt.datetime, end: dt.datetime) -> set[int]:
    return set(TenantUsage.objects.filter(endpoint__site=site, bucket_start__gte=start, bucket_start__lt=end,
                                          tenant__isnull=False).values_list("tenant_id", flat=True).distinct())


def _check_currency(site: Site, rows: list[dict], tenants_by_id: dict[int, str]) -> None:
    for r in rows:
        if r["currency"] and r["currency"] != site.currency:
            raise ServiceError(
                f"{tenants_by_id.get(r['tenant_id'], 'A tenant')}'s price plan is in {r['currency']} but {site.name} "
                f"counts its costs in {site.currency}: revenue and cost need one currency.", field="currency")


def site_economics(*, site: Site, start: dt.datetime, end: dt.datetime) -> dict:
    """Every figure of economics.site_figures for one site, plus revenue per tenant and unpriced models."""
    check_range(start, end)
    usage = priced_usage(tenant_ids=_site_tenant_ids(site, start, end), start=start, end=end)
    rows = [r for r in usage.rows if r["site_id"] == site.pk]
    names = dict(Tenant.objects.filter(pk__in={r["tenant_id"] for r in rows}).values_list("pk", "name"))
    _check_currency(site, rows, names)
    revenue_by_tenant: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        revenue_by_tenant[names[r["tenant_id"]]] += _revenue_of(r)
    gpu_count, gpu_hours = site_gpu_hours(site=site, start=start, end=end)
    energy = site_energy_and_util(site=site, start=start, end=end)
    input_tokens, output_tokens = site_tokens(site=site, start=start, end=end)
    measures = economics.SiteMeasures(
        hours=_hours(start, end), gpu_count=gpu_count, gpu_hours=gpu_hours, gpu_energy_j=energy["energy_j"],
        energy_estimated=energy["estimated"], util_mean_pct=energy["util_mean_pct"],
        allocated_gpu_hours=site_allocated_gpu_hours(site=site, start=start, end=end),
        input_tokens=input_tokens, output_tokens=output_tokens, revenue=sum(revenue_by_tenant.values(), Decimal(0)),
    )
    figures = economics.site_figures(costs=site_cost_inputs(site), m=measures)
    figures.update({
        "site": site.pk, "site_name": site.name, "site_slug": site.slug, "start": start, "end": end,
        "contracted_mw": site.power_capacity_kw / 1000,
        "revenue_by_tenant": dict(revenue_by_tenant),
        "unpriced_models": sorted({m for _, m in usage.unpriced_models}),
    })
    return figures


def site_whatif(*, site: Site, start: dt.datetime, end: dt.datetime, figures: dict) -> dict:
    """The what-if curve's inputs (stated on the page), the curve, the current point and pooling scenarios."""
    power = GpuRollup1m.objects.filter(gpu__node__site=site, bucket__gte=start, bucket__lt=end).aggregate(
        max_w=Max("power_max_w"), min_w=Min("power_mean_w"))
    derived = power["max_w"] is not None and power["min_w"] is not None and power["max_w"] > power["min_w"]
    idle_w = Decimal(str(power["min_w"])) if derived else DEFAULT_IDLE_POWER_W
    max_w = Decimal(str(power["max_w"])) if derived else DEFAULT_MAX_POWER_W
    util = figures["gpu_utilization_pct"]
    tokens_per_gpu_hour = (Decimal(figures["tokens"]) / figures["gpu_hours"]) if figures["gpu_hours"] else None
    out: dict = {"idle_power_w": idle_w, "max_power_w": max_w, "power_derived": derived,
                 "fixed_cost_per_gpu_hour": site_cost_inputs(site).fixed_cost_per_gpu_hour,
                 "tokens_per_gpu_hour": tokens_per_gpu_hour, "current_util_pct": util,
                 "curve": [], "current": None, "pooling": None}
    if not util or not tokens_per_gpu_hour:
        return out
    inputs = economics.WhatIfInputs(
        fixed_cost_per_gpu_hour=out["fixed_cost_per_gpu_hour"], idle_power_w=idle_w, max_power_w=max_w,
        pue=site.pue, electricity_price_per_kwh=site.electricity_price_per_kwh,
        tokens_per_gpu_hour_at_full=tokens_per_gpu_hour / (util / 100),
    )
    out["tokens_per_gpu_hour_at_full"] = inputs.tokens_per_gpu_hour_at_full
    out["curve"] = economics.whatif_curve(inputs)
    out["current"] = (util / 100, economics.cost_per_mtok_at(inputs, util / 100))
    demands = site_tenant_demand(site=site, start=start, end=end)
    if len(demands) >= 2:
        pool = economics.pooling(demands)
        out["pooling"] = {
            "tenants": len(demands), "sum_of_peaks": pool.sum_of_peaks, "peak_of_sum": pool.peak_of_sum,
            "util_separate": pool.util_separate, "util_pooled": pool.util_pooled,
            "cost_per_mtok_separate": economics.cost_per_mtok_at(inputs, pool.util_separate)
            if pool.util_separate else None,
            "cost_per_mtok_pooled": economics.cost_per_mtok_at(inputs, pool.util_pooled)
            if pool.util_pooled else None,
        }
    return out


def site_tenant_demand(*, site: Site, start: dt.datetime, end: dt.datetime) -> dict[str, list[int]]:
    """Tenant name → tokens per hour at the site over [start, end) (hours without usage are 0)."""
    hours = int((end - start).total_seconds() // 3600) or 1
    first = start.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    out: dict[str, list[int]] = {}
    rows = (TenantUsage.objects.filter(endpoint__site=site, tenant__isnull=False, bucket_start__gte=start,
                                       bucket_start__lt=end)
            .values("tenant__name", "bucket_start").annotate(t=Sum(F("prompt_tokens") + F("generation_tokens"))))
    for r in rows:
        curve = out.setdefault(r["tenant__name"], [0] * hours)
        i = int((r["bucket_start"] - first).total_seconds() // 3600)
        if 0 <= i < hours:
            curve[i] += r["t"]
    return out


# ---------------------------------------------------------------- tenants

def tenant_get(*, user: User, tenant_id: int) -> Tenant:
    return get_object_or_404(Tenant.objects.visible_to(user).select_related("partner", "price_plan"), pk=tenant_id)


def tenant_economics(*, tenant: Tenant, start: dt.datetime, end: dt.datetime, with_cost: bool) -> dict:
    """Tokens, spend (the partner's revenue) per model; with `with_cost` (partner staff only) the tenant's
    share of each site's cost — site cost × the tenant's tokens there ÷ all tokens there — and the margin."""
    check_range(start, end)
    usage = priced_usage(tenant_ids={tenant.pk}, start=start, end=end)
    by_model: dict[str, dict] = {}
    tokens_by_site: dict[int, int] = defaultdict(int)
    for r in usage.rows:
        m = by_model.setdefault(r["model"], {"model": r["model"], "input_tokens": 0, "output_tokens": 0,
                                             "revenue": Decimal(0), "priced": True})
        m["input_tokens"] += r["prompt_tokens"]
        m["output_tokens"] += r["generation_tokens"]
        m["revenue"] += _revenue_of(r)
        m["priced"] = m["priced"] and r["input_revenue"] is not None
        tokens_by_site[r["site_id"]] += r["prompt_tokens"] + r["generation_tokens"]
    input_tokens = sum(m["input_tokens"] for m in by_model.values())
    output_tokens = sum(m["output_tokens"] for m in by_model.values())
    revenue = sum((m["revenue"] for m in by_model.values()), Decimal(0))
    from factory_portal.units import per_mtok

    out: dict = {
        "tenant": tenant.pk, "tenant_name": tenant.name, "start": start, "end": end,
        "currency": tenant.price_plan.currency if tenant.price_plan else None,
        "input_tokens": input_tokens, "output_tokens": output_tokens, "tokens": input_tokens + output_tokens,
        "revenue": revenue, "revenue_per_mtok": per_mtok(revenue, input_tokens + output_tokens),
        "models": sorted(by_model.values(), key=lambda m: m["model"]),
    }
    if with_cost:
        cost = Decimal(0)
        for site in Site.objects.filter(pk__in=tokens_by_site):
            figures = site_economics(site=site, start=start, end=end)
            if figures["tokens"]:
                cost += figures["cost"] * tokens_by_site[site.pk] / figures["tokens"]
        out.update({"cost": cost, "cost_per_mtok": per_mtok(cost, out["tokens"]), "margin": revenue - cost})
    return out


# ---------------------------------------------------------------- portfolio

def portfolio(*, user: User, start: dt.datetime, end: dt.datetime, partner_id: int | None = None) -> dict:
    """The user's partners' sites side by side, totals in one currency, and tenant concentration."""
    check_range(start, end)
    sites = Site.objects.visible_to(user).select_related("partner").order_by("partner__name", "name")
    if partner_id is not None:
        sites = sites.filter(partner_id=partner_id)
    rows = [site_economics(site=s, start=start, end=end) for s in sites]
    currencies = {r["currency"] for r in rows}
    out: dict = {"start": start, "end": end, "sites": rows, "currency": None, "totals": None,
                 "largest_tenant": None, "largest_tenant_share": None, "note": ""}
    if len(currencies) > 1:
        out["note"] = f"Sites count in {', '.join(sorted(currencies))}: totals need one currency."
        return out
    if not rows:
        return out
    revenue_by_tenant: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        for name, value in r["revenue_by_tenant"].items():
            revenue_by_tenant[name] += value
    name, share = economics.concentration(revenue_by_tenant)
    tokens = sum(r["tokens"] for r in rows)
    revenue = sum((r["revenue"] for r in rows), Decimal(0))
    cost = sum((r["cost"] for r in rows), Decimal(0))
    gpu_hours = sum((r["gpu_hours"] for r in rows), Decimal(0))
    util_hours = [(r["gpu_utilization_pct"], r["gpu_hours"]) for r in rows if r["gpu_utilization_pct"] is not None]
    kwh = [r["facility_energy_kwh"] for r in rows if r["facility_energy_kwh"] is not None]
    from factory_portal.units import per_mtok

    out.update({
        "currency": currencies.pop(), "largest_tenant": name, "largest_tenant_share": share,
        "totals": {
            "contracted_mw": sum((r["contracted_mw"] for r in rows), Decimal(0)),
            "drawn_mw": sum(kwh, Decimal(0)) / (_hours(start, end) * 1000) if kwh else None,
            "gpu_count": sum(r["gpu_count"] for r in rows), "gpu_hours": gpu_hours,
            "gpu_utilization_pct": (sum((u * h for u, h in util_hours), Decimal(0))
                                    / sum((h for _, h in util_hours), Decimal(0)))
            if util_hours and sum((h for _, h in util_hours), Decimal(0)) else None,
            "tokens": tokens, "revenue": revenue, "cost": cost, "margin": revenue - cost,
            "cost_per_mtok": per_mtok(cost, tokens), "revenue_per_mtok": per_mtok(revenue, tokens),
            "energy_kwh": sum((r["energy_kwh"] for r in rows if r["energy_kwh"] is not None), Decimal(0)),
            "energy_estimated": any(r["energy_estimated"] for r in rows),
        },
    })
    return out
