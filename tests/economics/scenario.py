"""The worked example of docs/economics.md, built through the real pipeline: GPU samples → rollups, engine
pages served over loopback HTTP → scrapes → usage deltas → hourly rollups → attribution → prices.

Window: 2026-03-02 12:00–14:00 UTC (2 hours). Partner A has two sites:

- S1 = world.site_a: PUE 1.2, electricity 0.15 USD/kWh, capex 21,915 USD per GPU over 30 months
  (21,915 ÷ (30 × 730.5) = 1.00 USD per GPU-hour), opex 0.25 USD per GPU-hour; 1 GPU (world.gpu_a) drawing
  720 W at 50 % utilization, with an energy counter. SGLang endpoint `sglang-shared` split by label:
  tenant_id="acme" → Tenant A Labs, tenant_id="zeta" → Zeta AI. Model llama-70b.
- S2 = "Site A2": PUE 1.5, electricity 0.10 USD/kWh, capex 14,610 USD over 20 months (1.00 USD per GPU-hour),
  opex 0.50 USD per GPU-hour; 1 GPU drawing 400 W at 25 %, WITHOUT an energy counter (energy is estimated
  by integrating power). vLLM endpoint `vllm-s2`, whole endpoint → Zeta AI. Model qwen-7b.

Counters (prompt, generation) at 12:00 (baseline), 12:30, 13:15, 13:45:
  acme  (0.5M, 0.1M) (2.5M, 1.1M) (4.5M, 2.1M) (6.5M, 3.1M)         → 6M in, 3M out
  zeta  (1M, 1M)     (2M, 1.5M)   (3M, 2M)     restart: (0.5M, 256,250) → 2.5M in, 1,256,250 out
  vllm  (0, 0)       (4M, 2M)     (8M, 4M)     (12M, 6M)             → 12M in, 6M out
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import time_machine

from sites.models import Gpu
from telemetry.collectors.nvml import GpuReading
from telemetry.ingest import gpu_samples_write, sample_row
from telemetry.metering_services import endpoints_scrape, usage_rollup
from telemetry.rollups import gpu_rollup_1m_compute, site_rollup_1m_compute
from tenants.metering import tenant_usage_refresh
from tenants.models import AttributionRule, PriceRate, PriceTier
from tests import factories
from tests.telemetry.metering_server import vllm_page

START = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
END = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)
POLLS = [dt.timedelta(minutes=m) for m in (0, 30, 75, 105)]
ACME = [(500_000, 100_000), (2_500_000, 1_100_000), (4_500_000, 2_100_000), (6_500_000, 3_100_000)]
ZETA = [(1_000_000, 1_000_000), (2_000_000, 1_500_000), (3_000_000, 2_000_000), (500_000, 256_250)]
VLLM = [(0, 0), (4_000_000, 2_000_000), (8_000_000, 4_000_000), (12_000_000, 6_000_000)]


def sglang_page(counters: dict[str, tuple[int, int]], *, model: str = "llama-70b") -> str:
    lines = ["# TYPE sglang:prompt_tokens_total counter"]
    lines += [f'sglang:prompt_tokens_total{{model_name="{model}",tenant_id="{t}"}} {p}'
              for t, (p, _) in counters.items()]
    lines += ["# TYPE sglang:generation_tokens_total counter"]
    lines += [f'sglang:generation_tokens_total{{model_name="{model}",tenant_id="{t}"}} {g}'
              for t, (_, g) in counters.items()]
    return "\n".join(lines) + "\n"


def _gpu_samples(gpu: Gpu, *, power_w: float, util_pct: int, counter: bool) -> None:
    """One sample a minute from 11:59 to 14:00: the 11:59 sample is the baseline of the 12:00 minute."""
    rows = []
    for minute in range(-1, 121):
        ts = START + dt.timedelta(minutes=minute)
        energy_mj = int(power_w * 1000 * 60 * (minute + 1)) if counter else None  # W × 1000 mJ/J × 60 s
        reading = GpuReading(uuid=gpu.uuid, index=gpu.index, ts=ts, util_pct=util_pct, power_w=power_w,
                             energy_mj=energy_mj)
        rows.append(sample_row(gpu_id=gpu.pk, reading=reading, source="nvml"))
    gpu_samples_write(rows=rows)


def build(world, server) -> object:
    """Sites, GPUs with energy, endpoints, tenants, rules and plans of the example; usage scraped and metered."""
    w = world
    site1 = w.site_a
    site1.pue, site1.electricity_price_per_kwh = Decimal("1.2"), Decimal("0.15")
    site1.capex_per_gpu, site1.amortization_months, site1.opex_per_gpu_hour = Decimal("21915"), 30, Decimal("0.25")
    site1.save()
    site2 = factories.SiteFactory(partner=w.partner_a, name="Site A2", slug="site-a2", pue=Decimal("1.5"),
                                  electricity_price_per_kwh=Decimal("0.10"), capex_per_gpu=Decimal("14610"),
                                  amortization_months=20, opex_per_gpu_hour=Decimal("0.50"))
    gpu2 = factories.GpuFactory(node=factories.NodeFactory(site=site2, hostname="node-a2"))
    # Both GPUs were registered long before the window (capex counts from registration).
    Gpu.objects.filter(pk__in=[w.gpu_a.pk, gpu2.pk]).update(created_at=START - dt.timedelta(days=30))
    w.gpu_a.refresh_from_db()
    gpu2.refresh_from_db()
    # Tenant A holds GPU a for the whole window; nothing is allocated at S2.
    w.allocation_a.starts_at = START - dt.timedelta(days=1)
    w.allocation_a.save()
    _gpu_samples(w.gpu_a, power_w=720.0, util_pct=50, counter=True)
    _gpu_samples(gpu2, power_w=400.0, util_pct=25, counter=False)
    gpu_rollup_1m_compute(start=START - dt.timedelta(minutes=1), end=END + dt.timedelta(minutes=1))
    site_rollup_1m_compute(start=START - dt.timedelta(minutes=1), end=END + dt.timedelta(minutes=1))

    zeta = factories.TenantFactory(partner=w.partner_a, name="Zeta AI", slug="zeta-ai")
    shared = factories.ServingEndpointFactory(site=site1, name="sglang-shared", engine="sglang",
                                              metrics_url=server.url("/sglang"))
    vllm = factories.ServingEndpointFactory(site=site2, name="vllm-s2", engine="vllm",
                                            metrics_url=server.url("/vllm"))
    since = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    AttributionRule.objects.create(endpoint=shared, label="tenant_id", value="acme", tenant=w.tenant_a,
                                   effective_from=since)
    zeta_rule = AttributionRule.objects.create(endpoint=shared, label="tenant_id", value="zeta", tenant=zeta,
                                               effective_from=since)
    AttributionRule.objects.create(endpoint=vllm, tenant=zeta, effective_from=since)

    # Tenant A: llama-70b 1.00 in / 2.00 out per Mtok; beyond 4M tokens of a kind in the month 0.50 / 1.00.
    rate = PriceRate.objects.create(plan=w.plan_a, model="llama-70b", input_price_per_mtok=Decimal("1.00"),
                                    output_price_per_mtok=Decimal("2.00"))
    PriceTier.objects.create(rate=rate, threshold_tokens=4_000_000, input_price_per_mtok=Decimal("0.50"),
                             output_price_per_mtok=Decimal("1.00"))
    # Zeta: any model 0.40 / 0.80; qwen-7b 0.10 / 0.20, beyond 10M tokens of a kind 0.05 / 0.10.
    zeta_plan = factories.PricePlanFactory(partner=w.partner_a, name="Zeta plan")
    PriceRate.objects.create(plan=zeta_plan, model="*", input_price_per_mtok=Decimal("0.40"),
                             output_price_per_mtok=Decimal("0.80"))
    qwen = PriceRate.objects.create(plan=zeta_plan, model="qwen-7b", input_price_per_mtok=Decimal("0.10"),
                                    output_price_per_mtok=Decimal("0.20"))
    PriceTier.objects.create(rate=qwen, threshold_tokens=10_000_000, input_price_per_mtok=Decimal("0.05"),
                             output_price_per_mtok=Decimal("0.10"))
    zeta.price_plan = zeta_plan
    zeta.save()
    factories.TenantMembershipFactory(user=factories.UserFactory(username="zed"), tenant=zeta, role="admin")

    for i, offset in enumerate(POLLS):
        server.set("/sglang", sglang_page({"acme": ACME[i], "zeta": ZETA[i]}))
        # The vLLM process keeps its start time; the SGLang page has none, its reset shows as counters going back.
        server.set("/vllm", vllm_page(engines={"0": VLLM[i]}, model="qwen-7b"))
        with time_machine.travel(START + offset, tick=False):
            endpoints_scrape(endpoint_ids=[shared.pk, vllm.pk])
    usage_rollup()
    tenant_usage_refresh(since=since, now=END)
    w.objects.update({"site1": site1, "site2": site2, "gpu2": gpu2, "zeta": zeta, "zeta_plan": zeta_plan,
                      "shared": shared, "vllm": vllm, "zeta_rule": zeta_rule})
    return w
