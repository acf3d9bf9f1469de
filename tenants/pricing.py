"""Pure pricing: what tokens cost under a plan's graduated volume tiers. Decimal only, nothing rounded here
(rounding happens once, at invoice-line level, in tenants/invoicing.py).

A rate prices tokens of one model from the first token of the month; each tier takes over once the tenant's
tokens of that kind (input or output, counted separately) of that model in the calendar month (UTC) pass its
threshold. Usage is priced in time order, so the first tokens of a month are the ones at the base price.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from factory_portal.units import TOKENS_PER_MTOK
from tenants.choices import TokenKind


@dataclass(frozen=True)
class Band:
    """Tokens from `threshold_tokens` (of the month) on cost `price_per_mtok`, until the next band."""

    threshold_tokens: int
    price_per_mtok: Decimal


@dataclass(frozen=True)
class UsageItem:
    """Tokens of one kind that one tenant used of one model in one hour (`key` ties the result to its source)."""

    key: object
    tenant_id: int
    model: str
    kind: str
    at: dt.datetime
    tokens: int


@dataclass
class PricedItem:
    item: UsageItem
    # (band, tokens) pieces; empty when the model is not priced (revenue None: absent, not zero)
    pieces: list[tuple[Band, int]] = field(default_factory=list)
    revenue: Decimal | None = None


def rate_bands(rate, kind: str) -> list[Band]:
    """The graduated bands of a `PriceRate` (with its `tiers`) for one token kind, lowest first."""
    attr = "input_price_per_mtok" if kind == TokenKind.INPUT else "output_price_per_mtok"
    bands = [Band(0, Decimal(getattr(rate, attr)))]
    for tier in sorted(rate.tiers.all(), key=lambda t: t.threshold_tokens):
        bands.append(Band(int(tier.threshold_tokens), Decimal(getattr(tier, attr))))
    return bands


def split_by_bands(*, used_before: int, tokens: int, bands: list[Band]) -> list[tuple[Band, int]]:
    """Split `tokens` that follow `used_before` tokens of the month across the bands they fall in."""
    pieces: list[tuple[Band, int]] = []
    position, left = used_before, tokens
    for i, band in enumerate(bands):
        if left <= 0:
            break
        upper = bands[i + 1].threshold_tokens if i + 1 < len(bands) else None
        if upper is not None and position >= upper:
            continue
        take = left if upper is None else min(left, upper - position)
        pieces.append((band, take))
        position += take
        left -= take
    return pieces


def amount_of(tokens: int, price_per_mtok: Decimal) -> Decimal:
    """Exact (unrounded) amount of `tokens` at a price per million tokens."""
    return Decimal(tokens) * price_per_mtok / TOKENS_PER_MTOK


def month_of(at: dt.datetime) -> dt.date:
    return at.astimezone(dt.UTC).date().replace(day=1)


def price_items(items: Iterable[UsageItem], *, bands_for) -> list[PricedItem]:
    """Price usage in time order. `bands_for(tenant_id, model, kind)` → bands, or None when unpriced.

    Items must include every priced item of each (tenant, month) from the month's start, or the tier
    position is wrong: callers read usage from the first day of the earliest month they price.
    """
    used: dict[tuple, int] = {}
    out: list[PricedItem] = []
    for item in sorted(items, key=lambda i: (i.at, i.tenant_id, i.model, i.kind, str(i.key))):
        priced = PricedItem(item=item)
        bands = bands_for(item.tenant_id, item.model, item.kind)
        if bands is not None and item.tokens:
            counter = (item.tenant_id, item.model, item.kind, month_of(item.at))
            before = used.get(counter, 0)
            priced.pieces = split_by_bands(used_before=before, tokens=item.tokens, bands=bands)
            priced.revenue = sum((amount_of(n, b.price_per_mtok) for b, n in priced.pieces), Decimal(0))
            used[counter] = before + item.tokens
        elif bands is not None:
            priced.revenue = Decimal(0)
        out.append(priced)
    return out
