"""`seed_demo`: what it creates, that its history went through the real services consistently, and that a second
run adds nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from sites.choices import PartnerRole, SiteStatus
from sites.models import Gpu, Membership, Node, Partner, ServingEndpoint, Site, SiteMilestone
from telemetry.models import GpuRollup1h, GpuRollup1m, GpuSample, SiteGpuRollup1m, UsageDelta, UsageRollup
from telemetry.models.metering import CounterSnapshot, EngineSeries, UsageBucket
from telemetry.rollups import gpu_energy_from_samples
from telemetry.simulator.seed import USERNAMES, demo_seed
from tenants.choices import TenantStatus
from tenants.models import (
    Allocation,
    AttributionRule,
    AuditEvent,
    PricePlan,
    PriceRate,
    Tenant,
    TenantMembership,
    TenantUsage,
)

MODELS = [Partner, Membership, Site, SiteMilestone, Node, Gpu, ServingEndpoint, GpuSample, GpuRollup1m, GpuRollup1h,
          SiteGpuRollup1m, EngineSeries, CounterSnapshot, UsageDelta, UsageRollup, Tenant, TenantMembership,
          PricePlan, PriceRate, Allocation, AttributionRule, AuditEvent]


def _counts() -> dict[str, int]:
    counts = {m.__name__: m.objects.count() for m in MODELS}
    counts["User"] = get_user_model().objects.count()
    return counts


@pytest.fixture
def seeded(db):
    now = timezone.now().replace(microsecond=0)
    result = demo_seed(password="demo-pass-123", now=now, days=1)
    return now, result


def test_seed_creates_a_labelled_simulated_factory(seeded):
    # given
    now, result = seeded
    partner = Partner.objects.get(name="Demo Capital")
    # then: two sites that differ in PUE, tariff and time zone, one still in build-out
    sites = list(Site.objects.filter(partner=partner))
    assert len(sites) >= 2
    assert len({s.pue for s in sites}) == len({s.electricity_price_per_kwh for s in sites}) == len(sites)
    assert len({s.time_zone for s in sites}) == len(sites)
    assert any(s.status != SiteStatus.LIVE for s in sites)
    # ≥ 8 GPUs across nodes, every one labelled simulated, read through the ingest path (source "sim")
    gpus = Gpu.objects.filter(node__site__partner=partner)
    assert gpus.count() >= 8 and gpus.values("node").distinct().count() >= 2
    assert not gpus.filter(simulated=False).exists()
    assert set(GpuSample.objects.values_list("source", flat=True).distinct()) == {"sim"}
    # ≥ 3 engine kinds on loopback, labelled simulated; the SGLang one is split by tenant_id
    endpoints = ServingEndpoint.objects.filter(site__partner=partner)
    assert endpoints.values("engine").distinct().count() >= 3
    assert all(e.simulated and e.metrics_url.startswith("http://127.0.0.1:") for e in endpoints)
    shared = endpoints.get(engine="sglang")
    rules = AttributionRule.objects.filter(endpoint=shared)
    assert {(r.label, r.value, r.tenant.name) for r in rules} == {("tenant_id", "acme", "Acme"),
                                                                  ("tenant_id", "globex", "Globex")}
    # tenants approved, with price plans and allocations (the shared endpoint held by both)
    for name in ("Acme", "Globex"):
        tenant = Tenant.objects.get(partner=partner, name=name)
        assert tenant.status == TenantStatus.APPROVED and tenant.price_plan is not None
        assert tenant.allocations.filter(gpu__isnull=False).exists()
        assert tenant.allocations.filter(endpoint=shared).exists()
    # users with their roles; the password is stored hashed only
    users = {u.username: u for u in get_user_model().objects.filter(username__in=USERNAMES)}
    assert set(users) == set(USERNAMES) == set(result.new_logins)
    assert Membership.objects.get(user=users["demo-operator"], partner=partner).role == PartnerRole.OWNER
    assert Membership.objects.get(user=users["demo-viewer"], partner=partner).role == PartnerRole.VIEWER
    assert all(u.check_password("demo-pass-123") and "demo-pass-123" not in u.password for u in users.values())


def test_seeded_history_is_consistent_downstream(seeded):
    # given
    now, _ = seeded
    gpu = Gpu.objects.filter(node__hostname="demo-osl-h100-01").first()
    # then: the rollup services caught up, and a GPU's hourly energy equals its counter difference
    assert GpuRollup1h.objects.filter(gpu=gpu).count() >= 23
    assert SiteGpuRollup1m.objects.exists()
    start = GpuRollup1h.objects.filter(gpu=gpu).order_by("bucket").first().bucket + dt.timedelta(hours=1)
    end = start + dt.timedelta(hours=12)
    rolled = GpuRollup1h.objects.filter(gpu=gpu, bucket__gte=start, bucket__lt=end).aggregate(e=Sum("energy_j"))["e"]
    assert rolled == gpu_energy_from_samples(gpu_id=gpu.pk, start=start, end=end)
    # a busy H100 for 12 hours: between idle and limit
    assert Decimal(70 * 43200) < rolled < Decimal(700 * 43200)
    # usage: deltas came from parsed pages, and the hourly rollups hold exactly the deltas' tokens
    deltas = UsageDelta.objects.aggregate(p=Sum("prompt_tokens"), g=Sum("generation_tokens"))
    hourly = UsageRollup.objects.filter(bucket=UsageBucket.HOUR).aggregate(p=Sum("prompt_tokens"),
                                                                           g=Sum("generation_tokens"))
    assert deltas["g"] > 0 and deltas == hourly
    # the TGI engine restarts every 6 hours: its counter drops are resets, nothing else resets
    assert UsageDelta.objects.filter(endpoint__engine="tgi", reset=True).count() >= 3
    assert not UsageDelta.objects.filter(reset=True).exclude(endpoint__engine="tgi").exists()
    assert EngineSeries.objects.filter(labels__tenant_id="globex").exists()
    # the simulated GPUs count as in service from their first back-filled reading (GPU-hours cover the history),
    # and the back-filled usage is attributed to the tenants sharing the SGLang endpoint
    assert gpu.created_at <= now - dt.timedelta(hours=23)
    assert set(TenantUsage.objects.filter(tenant__isnull=False).values_list("tenant__name", flat=True)) == {
        "Acme", "Globex"}


def test_seed_twice_adds_nothing(seeded):
    # given
    before = _counts()
    # when
    second = demo_seed(password="another-password", days=1)
    call_command("seed_demo", "--days", "1")
    # then
    assert _counts() == before
    assert second.new_logins == {} and not second.backfilled
    assert get_user_model().objects.get(username="demo-operator").check_password("demo-pass-123")
