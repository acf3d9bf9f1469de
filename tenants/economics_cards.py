"""The economics of the partner overview's site cards: revenue today, cost per million tokens and margin.

Registered with `sites.dashboard.register_card_provider` in TenantsConfig.ready(), since `sites` imports no
app above it. "Today" is the site's own calendar day, in its time zone, up to now. The figures of a site are
computed at most once a minute (cached), since every open overview asks for them every 15 s.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.core.cache import cache

from factory_portal.exceptions import ServiceError
from factory_portal.money import round_money
from tenants.economics_selectors import site_economics


def _day_start(now: dt.datetime, time_zone: str) -> dt.datetime:
    local = now.astimezone(zoneinfo.ZoneInfo(time_zone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)


CACHE_S = 60


def _site_day_figures(site, now: dt.datetime) -> dict | str:
    """The site's economics from the start of its day to `now` (to the minute), or the reason there are none."""
    minute = now.replace(second=0, microsecond=0)
    key = f"fp:card-economics:{site.pk}:{minute:%Y%m%d%H%M}"
    figures = cache.get(key)
    if figures is None:
        try:
            figures = site_economics(site=site, start=_day_start(minute, site.time_zone), end=minute)
        except ServiceError as exc:
            # e.g. a tenant priced in another currency than the site's: say so instead of a wrong sum
            figures = exc.message[:60]
        cache.set(key, figures, CACHE_S)
    return figures


def site_cards_economics(*, user, cards, now: dt.datetime) -> None:
    for card in cards:
        figures = _site_day_figures(card.site, now)
        if isinstance(figures, str):
            card.economics.update({"revenue_today": figures, "cost_per_mtok": "—", "margin": "—"})
            continue
        currency = figures["currency"]
        card.economics["revenue_today"] = f"{round_money(figures['revenue'], currency)} {currency}"
        cost_per_mtok = figures["cost_per_mtok"]
        card.economics["cost_per_mtok"] = (
            "no tokens yet" if cost_per_mtok is None else f"{round_money(cost_per_mtok, currency)} {currency}"
        )
        margin_pct = figures["margin_pct"]
        card.economics["margin"] = (
            f"{round_money(figures['margin'], currency)} {currency}"
            + ("" if margin_pct is None else f" ({margin_pct:.1f}%)")
        )
