"""The overview's site cards carry the economics of the site's own day (revenue, cost per Mtok, margin)."""

import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from sites import dashboard
from tenants import economics_cards

NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.mark.django_db
def test_cards_show_todays_economics_in_the_site_currency(world, monkeypatch):
    # given a site day with 2,000,000 tokens, 50 USD revenue and 30 USD cost
    seen = {}

    def fake_site_economics(*, site, start, end):
        seen[site.slug] = (start, end)
        return {"currency": "USD", "revenue": Decimal("50.004"), "cost_per_mtok": Decimal("15"),
                "margin": Decimal("20.004"), "margin_pct": Decimal("40.0048")}

    monkeypatch.setattr(economics_cards, "site_economics", fake_site_economics)
    # when
    with time_machine.travel(NOW, tick=False):
        cards = dashboard.site_cards(user=world.users["operator"], now=NOW)
    # then: figures rounded once to the currency, and "today" is the site's calendar day (Europe/Oslo = UTC+1)
    card = next(c for c in cards if c.site.slug == "site-a")
    assert card.economics == {"revenue_today": "50.00 USD", "cost_per_mtok": "15.00 USD",
                              "margin": "20.00 USD (40.0%)"}
    assert seen["site-a"] == (dt.datetime(2026, 3, 9, 23, 0, tzinfo=dt.UTC), NOW)  # NOW is on the minute


@pytest.mark.django_db
def test_cards_of_a_site_without_tokens_say_so(world):
    with time_machine.travel(NOW, tick=False):
        cards = dashboard.site_cards(user=world.users["operator"], now=NOW)
    card = next(c for c in cards if c.site.slug == "site-a")
    assert card.economics["cost_per_mtok"] == "no tokens yet"
    assert card.economics["revenue_today"] == "0.00 USD"
