"""Unit conversions with the unit in every name. Energy is stored in joules, shown in kWh."""

from __future__ import annotations

from decimal import Decimal

JOULES_PER_KWH = Decimal(3_600_000)
TOKENS_PER_MTOK = Decimal(1_000_000)
# Average hours in a month (365.25 × 24 / 12), used to turn capex amortization months into GPU-hours.
HOURS_PER_MONTH = Decimal("730.5")


def joules_to_kwh(energy_j: Decimal | int | float) -> Decimal:
    return Decimal(str(energy_j)) / JOULES_PER_KWH


def kwh_to_joules(energy_kwh: Decimal | int | float) -> Decimal:
    return Decimal(str(energy_kwh)) * JOULES_PER_KWH


def per_mtok(amount: Decimal, tokens: int) -> Decimal | None:
    """Amount per million tokens, or None when no token was served (a ratio over nothing is absent, not 0)."""
    if tokens <= 0:
        return None
    return amount / Decimal(tokens) * TOKENS_PER_MTOK
