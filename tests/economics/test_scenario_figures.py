"""Every figure of the worked example (tests/economics/scenario.py, docs/economics.md), computed by hand."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tenants import economics_selectors as es
from tenants.metering import tenant_usage_refresh
from tenants.models import TenantUsage
from tests.economics.scenario import END, START

pytestmark = pytest.mark.django_db


def test_attribution_splits_the_shared_endpoint_by_label_and_survives_the_restart(econ) -> None:
    # given the scenario (three polls after the baseline; zeta's counters went back at 13:45)
    # when
    rows = TenantUsage.objects.filter(bucket_start__gte=START, bucket_start__lt=END)
    by_tenant = {}
    for r in rows:
        p, g = by_tenant.get((r.tenant.name, r.model), (0, 0))
        by_tenant[(r.tenant.name, r.model)] = (p + r.prompt_tokens, g + r.generation_tokens)
    # then
    # acme: (2.5M−0.5M) + (4.5M−2.5M) + (6.5M−4.5M) = 6M in; (1.1M−0.1M) + 1M + 1M = 3M out
    # zeta: (2M−1M) + (3M−2M) + 0.5M (reset: the new value is the delta) = 2.5M in;
    #       0.5M + 0.5M + 256,250 = 1,256,250 out
    # vLLM: 4M × 3 = 12M in, 2M × 3 = 6M out
    assert by_tenant == {
        ("Tenant A Labs", "llama-70b"): (6_000_000, 3_000_000),
        ("Zeta AI", "llama-70b"): (2_500_000, 1_256_250),
        ("Zeta AI", "qwen-7b"): (12_000_000, 6_000_000),
    }


def test_metering_twice_changes_nothing(econ) -> None:
    # given
    before = sorted(TenantUsage.objects.values_list("series_id", "bucket_start", "tenant_id", "prompt_tokens",
                                                    "generation_tokens"))
    # when
    tenant_usage_refresh(since=START, now=END)
    tenant_usage_refresh(since=START, now=END)
    # then
    after = sorted(TenantUsage.objects.values_list("series_id", "bucket_start", "tenant_id", "prompt_tokens",
                                                   "generation_tokens"))
    assert after == before and len(after) == 6  # 3 series × 2 hours


def test_site_one_figures(econ) -> None:
    # when
    f = es.site_economics(site=econ.site1, start=START, end=END)
    # then
    # energy: 720 W × 7,200 s = 5,184,000 J = 1.44 kWh (counter), facility 1.44 × 1.2 = 1.728 kWh
    assert f["energy_kwh"] == D("1.44") and f["energy_estimated"] is False
    assert f["facility_energy_kwh"] == D("1.728")
    # energy cost 1.728 × 0.15 = 0.2592; capex 21,915 ÷ (30 × 730.5) = 1.00 per GPU-hour × 2 GPU-hours = 2.00;
    # opex 0.25 × 2 = 0.50; cost 2.7592
    assert f["gpu_hours"] == D(2)
    assert f["energy_cost"] == D("0.2592")
    assert f["capex_amortization"] == D("2.00")
    assert f["opex"] == D("0.50")
    assert f["cost"] == D("2.7592")
    # tokens: acme 9M + zeta 3,756,250 = 12,756,250 (in 8.5M, out 4,256,250)
    assert (f["input_tokens"], f["output_tokens"], f["tokens"]) == (8_500_000, 4_256_250, 12_756_250)
    # revenue, Tenant A (tiers after 4M tokens of a kind in the month):
    #   input hour 12: 2M × 1.00 = 2.00; hour 13: 4M = 2M × 1.00 + 2M × 0.50 = 3.00 → 5.00
    #   output 3M × 2.00 = 6.00 (below 4M) → A = 11.00
    # Zeta on llama-70b (the plan's * rate): 2.5M × 0.40 = 1.00, 1,256,250 × 0.80 = 1.005 → 2.005
    assert f["revenue_by_tenant"] == {"Tenant A Labs": D("11.00"), "Zeta AI": D("2.005")}
    assert f["revenue"] == D("13.005")
    assert f["cost_per_mtok"] == D("2.7592") / D("12.75625")
    assert f["revenue_per_mtok"] == D("13.005") / D("12.75625")
    assert f["margin"] == D("13.005") - D("2.7592") == D("10.2458")
    assert f["tokens_per_kwh"] == D(12_756_250) / D("1.728")
    assert f["gpu_utilization_pct"] == D(50)
    # Tenant A holds the only GPU for both hours: 2 ÷ 2
    assert f["allocation_ratio"] == D(1)


def test_site_two_figures_estimated_energy(econ) -> None:
    # when
    f = es.site_economics(site=econ.site2, start=START, end=END)
    # then
    # no counter: power integrated, 400 W × 7,200 s = 2,880,000 J = 0.8 kWh, estimated; facility × 1.5 = 1.2 kWh
    assert f["energy_kwh"] == D("0.8") and f["energy_estimated"] is True
    assert f["facility_energy_kwh"] == D("1.2")
    # energy 1.2 × 0.10 = 0.12; capex 14,610 ÷ (20 × 730.5) = 1.00 × 2 = 2.00; opex 0.50 × 2 = 1.00 → 3.12
    assert f["cost"] == D("3.12")
    # qwen-7b input: 4M × 0.10 (hour 12) + [6M × 0.10 + 2M × 0.05] (hour 13, tier after 10M) = 1.10
    # output: 6M × 0.20 = 1.20 → 2.30
    assert f["revenue"] == D("2.30")
    assert f["tokens"] == 18_000_000
    assert f["cost_per_mtok"] == D("3.12") / D(18)
    assert f["margin"] == D("-0.82")
    assert f["tokens_per_kwh"] == D(18_000_000) / D("1.2") == D(15_000_000)
    assert f["gpu_utilization_pct"] == D(25)
    assert f["allocation_ratio"] == D(0)


def test_portfolio(econ, world) -> None:
    # when
    p = es.portfolio(user=world.users["operator"], start=START, end=END)
    # then
    assert [s["site_name"] for s in p["sites"]] == ["Site A", "Site A2"]
    t = p["totals"]
    assert t["revenue"] == D("13.005") + D("2.30") == D("15.305")
    assert t["cost"] == D("2.7592") + D("3.12") == D("5.8792")
    assert t["margin"] == D("9.4258")
    # contracted 2,000 kW per site (factory) → 4 MW; drawn = (1.728 + 1.2) kWh ÷ 2 h ÷ 1000 = 0.001464 MW
    assert t["contracted_mw"] == D(4)
    assert t["drawn_mw"] == D("0.001464")
    # utilization weighted by GPU-hours: (50 × 2 + 25 × 2) ÷ 4 = 37.5
    assert t["gpu_utilization_pct"] == D("37.5")
    # concentration: Tenant A 11.00 of 15.305
    assert p["largest_tenant"] == "Tenant A Labs"
    assert p["largest_tenant_share"] == D("11.00") / D("15.305")


def test_whatif_and_pooling(econ) -> None:
    # given
    f = es.site_economics(site=econ.site1, start=START, end=END)
    # when
    w = es.site_whatif(site=econ.site1, start=START, end=END, figures=f)
    # then
    # constant 720 W: no spread between idle and max to derive from, so the stated defaults (100 W, 700 W) apply
    assert (w["idle_power_w"], w["max_power_w"], w["power_derived"]) == (D(100), D(700), False)
    # current: 12,756,250 tokens ÷ 2 GPU-hours = 6,378,125 per GPU-hour at 50 % → 12,756,250 at 100 %
    assert w["tokens_per_gpu_hour_at_full"] == D(12_756_250)
    # at 50 %: fixed 1.25 + (100 + 600 × 0.5) W = 0.4 kW × 1.2 × 0.15 = 0.072 → 1.322 per GPU-hour
    assert w["current"] == (D("0.5"), D("1.322") / D("6378125") * 1_000_000)
    # pooling: acme 3M (hour 12) + 6M (hour 13); zeta 1.5M + 2,256,250 → peaks 6M + 2,256,250 = 8,256,250;
    # sum per hour 4.5M, 8,256,250 → peak 8,256,250 (the peaks coincide: pooling gains nothing here)
    assert w["pooling"]["sum_of_peaks"] == 8_256_250 and w["pooling"]["peak_of_sum"] == 8_256_250
