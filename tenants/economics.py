"""Pure unit economics (DESIGN.md §6): Decimal in, Decimal out, no ORM. Selectors feed these
(tenants/economics_selectors.py); docs/economics.md defines every figure and works an example.

Nothing here rounds: figures are exact Decimals; pages and the API show them to a fixed number of places.
A ratio over nothing (no tokens, no energy, no revenue) is None — absent, not zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from factory_portal.units import HOURS_PER_MONTH, joules_to_kwh, per_mtok

DEFINITIONS = {
    "energy_kwh": "GPU energy: the GPUs' own energy counters summed over the period (kWh). Marked estimated where "
                  "a GPU has no counter and its power was integrated over time.",
    "facility_energy_kwh": "Facility energy = GPU kWh × the site's PUE.",
    "energy_cost": "Energy cost = facility kWh × the site's electricity price per kWh.",
    "capex_amortization": "Capex amortization = capex per GPU ÷ (amortization months × 730.5 h) × GPU-hours.",
    "opex": "Opex = opex per GPU-hour × GPU-hours.",
    "gpu_hours": "GPU-hours = for every GPU of the site, the hours of the period since it was registered.",
    "cost": "Cost = energy cost + capex amortization + opex.",
    "tokens": "Tokens = input (prompt) + output (generated) tokens metered at the site's endpoints, attributed "
              "or not.",
    "revenue": "Revenue = attributed tokens × the tenant's price per million input / output tokens of the model, "
               "volume tiers applied in time order within each calendar month.",
    "cost_per_mtok": "Cost per million tokens = cost ÷ tokens × 10⁶.",
    "revenue_per_mtok": "Revenue per million tokens = revenue ÷ tokens × 10⁶.",
    "margin": "Gross margin = revenue − cost (margin_pct = margin ÷ revenue × 100).",
    "tokens_per_kwh": "Tokens per kWh = tokens ÷ facility kWh.",
    "gpu_utilization_pct": "GPU utilization: mean of NVML utilization.gpu (% of time a kernel ran) over the "
                           "period.",
    "allocation_ratio": "Allocation ratio = GPU-hours allocated to active tenants (a MIG slice counts as its "
                        "compute slices ÷ 7 of a GPU) ÷ GPU-hours.",
}


@dataclass(frozen=True)
class SiteCostInputs:
    """What a site's costs are made of (from the Site row)."""

    currency: str
    pue: Decimal
    electricity_price_per_kwh: Decimal
    capex_per_gpu: Decimal
    amortization_months: int
    opex_per_gpu_hour: Decimal

    @property
    def fixed_cost_per_gpu_hour(self) -> Decimal:
        """Capex amortization + opex of one GPU for one hour: paid whether the GPU works or not."""
        return self.capex_per_gpu / (Decimal(self.amortization_months) * HOURS_PER_MONTH) + self.opex_per_gpu_hour


@dataclass(frozen=True)
class SiteMeasures:
    """What telemetry, metering and allocations measured for a site over a period."""

    hours: Decimal
    gpu_count: int
    gpu_hours: Decimal
    gpu_energy_j: Decimal | None
    energy_estimated: bool
    util_mean_pct: float | None
    allocated_gpu_hours: Decimal
    input_tokens: int
    output_tokens: int
    revenue: Decimal


def ratio(numerator: Decimal | None, denominator: Decimal | None) -> Decimal | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def site_figures(*, costs: SiteCostInputs, m: SiteMeasures) -> dict:
    """Every figure of a site over a period (DEFINITIONS), as exact Decimals (None = not measurable)."""
    tokens = m.input_tokens + m.output_tokens
    energy_kwh = joules_to_kwh(m.gpu_energy_j) if m.gpu_energy_j is not None else None
    facility_kwh = energy_kwh * costs.pue if energy_kwh is not None else None
    energy_cost = facility_kwh * costs.electricity_price_per_kwh if facility_kwh is not None else Decimal(0)
    capex = costs.capex_per_gpu / (Decimal(costs.amortization_months) * HOURS_PER_MONTH) * m.gpu_hours
    opex = costs.opex_per_gpu_hour * m.gpu_hours
    cost = energy_cost + capex + opex
    margin = m.revenue - cost
    return {
        "currency": costs.currency,
        "hours": m.hours,
        "gpu_count": m.gpu_count,
        "gpu_hours": m.gpu_hours,
        "input_tokens": m.input_tokens,
        "output_tokens": m.output_tokens,
        "tokens": tokens,
        "energy_kwh": energy_kwh,
        "energy_estimated": m.energy_estimated,
        "facility_energy_kwh": facility_kwh,
        "pue": costs.pue,
        "energy_cost": energy_cost,
        "capex_amortization": capex,
        "opex": opex,
        "cost": cost,
        "revenue": m.revenue,
        "cost_per_mtok": per_mtok(cost, tokens),
        "revenue_per_mtok": per_mtok(m.revenue, tokens),
        "margin": margin,
        "margin_pct": ratio(margin * 100, m.revenue),
        "tokens_per_kwh": ratio(Decimal(tokens), facility_kwh),
        "gpu_utilization_pct": None if m.util_mean_pct is None else Decimal(str(round(m.util_mean_pct, 4))),
        "allocation_ratio": ratio(m.allocated_gpu_hours, m.gpu_hours),
        "allocated_gpu_hours": m.allocated_gpu_hours,
        # kW → MW drawn on average over the period at the facility meter
        "drawn_mw": ratio(facility_kwh, m.hours * 1000) if facility_kwh is not None else None,
    }


# ---------------------------------------------------------------- what-if

@dataclass(frozen=True)
class WhatIfInputs:
    """The assumptions of a what-if curve, all per GPU."""

    fixed_cost_per_gpu_hour: Decimal  # capex amortization + opex: paid at any utilization
    idle_power_w: Decimal  # draw of a GPU at 0 % utilization
    max_power_w: Decimal  # draw of a GPU at 100 % utilization
    pue: Decimal
    electricity_price_per_kwh: Decimal
    tokens_per_gpu_hour_at_full: Decimal  # tokens a GPU serves in an hour at 100 % (current rate ÷ current util)


def cost_per_gpu_hour_at(inputs: WhatIfInputs, util: Decimal) -> Decimal:
    """Fixed cost + energy: power scales linearly from idle (0 %) to max (100 %), times PUE and tariff."""
    power_w = inputs.idle_power_w + (inputs.max_power_w - inputs.idle_power_w) * util
    return inputs.fixed_cost_per_gpu_hour + power_w / 1000 * inputs.pue * inputs.electricity_price_per_kwh


def cost_per_mtok_at(inputs: WhatIfInputs, util: Decimal) -> Decimal | None:
    """Cost per million tokens when GPUs run at `util` (0..1): tokens scale linearly with utilization."""
    tokens = inputs.tokens_per_gpu_hour_at_full * util
    if tokens <= 0:
        return None
    return cost_per_gpu_hour_at(inputs, util) / tokens * 1_000_000


def whatif_curve(inputs: WhatIfInputs, *, steps: int = 20) -> list[tuple[Decimal, Decimal | None]]:
    """(utilization 0..1, cost per Mtok) from 1/steps to 100 %."""
    return [(Decimal(i) / steps, cost_per_mtok_at(inputs, Decimal(i) / steps)) for i in range(1, steps + 1)]


@dataclass(frozen=True)
class Pooling:
    """N demand curves served separately (capacity = sum of their peaks) or pooled (capacity = peak of the
    sum). Utilization = mean total demand ÷ capacity."""

    sum_of_peaks: int
    peak_of_sum: int
    mean_total: Decimal
    util_separate: Decimal | None
    util_pooled: Decimal | None


def pooling(demands: Mapping[str, Sequence[int]]) -> Pooling:
    """`demands`: name → tokens per hour, aligned on the same hours (missing hours are 0 demand)."""
    curves = [list(c) for c in demands.values() if len(c)]
    length = max((len(c) for c in curves), default=0)
    if not length:
        return Pooling(0, 0, Decimal(0), None, None)
    padded = [c + [0] * (length - len(c)) for c in curves]
    total = [sum(col) for col in zip(*padded, strict=True)]
    sum_of_peaks = sum(max(c) for c in padded)
    peak_of_sum = max(total)
    mean_total = Decimal(sum(total)) / length
    return Pooling(sum_of_peaks, peak_of_sum, mean_total, ratio(mean_total, Decimal(sum_of_peaks)),
                   ratio(mean_total, Decimal(peak_of_sum)))


def concentration(revenue_by_tenant: Mapping[str, Decimal]) -> tuple[str | None, Decimal | None]:
    """The largest tenant and its share (0..1) of the revenue; (None, None) without revenue."""
    total = sum(revenue_by_tenant.values(), Decimal(0))
    if not revenue_by_tenant or total <= 0:
        return None, None
    name, top = max(revenue_by_tenant.items(), key=lambda kv: (kv[1], kv[0]))
    return name, top / total
