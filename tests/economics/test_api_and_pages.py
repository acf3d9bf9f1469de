"""Economics API and pages over the worked example: exact field names, decimals as strings, tenants see their
usage, spend and issued invoices but never cost or margin, and never another tenant's figures."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.urls import reverse

from tenants import invoicing
from tests.economics.scenario import END, START

pytestmark = pytest.mark.django_db
RANGE = {"start": START.isoformat(), "end": END.isoformat()}
APRIL_2 = dt.datetime(2026, 4, 2, 9, 0, tzinfo=dt.UTC)


def test_site_economics_api_fields_are_exact_decimal_strings(econ, api_client_for) -> None:
    # when
    body = api_client_for("viewer").get(reverse("economics-site", args=[econ.site1.pk]), RANGE).json()
    # then (figures of test_scenario_figures.test_site_one_figures, 6 places)
    assert body["revenue"] == "13.005000"
    assert body["cost_per_mtok"] == "0.216302"  # 2.7592 ÷ 12.75625
    assert body["revenue_per_mtok"] == "1.019500"  # 13.005 ÷ 12.75625 = 1.0195002…
    assert body["margin"] == "10.245800"
    assert body["energy_kwh"] == "1.440000" and body["energy_estimated"] is False
    assert body["tokens_per_kwh"] == "7382089.120370"  # 12,756,250 ÷ 1.728
    assert body["tokens"] == 12_756_250
    assert "cost_per_mtok" in body["definitions"] and body["whatif"]["curve"]


def test_tenant_sees_spend_but_never_cost_or_margin(econ, api_client_for, client_for) -> None:
    # given
    url = reverse("economics-tenant", args=[econ.tenant_a.pk])
    # when
    as_alice = api_client_for("alice").get(url, RANGE).json()
    as_operator = api_client_for("operator").get(url, RANGE).json()
    home = client_for("alice").get(reverse("tenants:tenant_home")).content.decode()
    # then
    assert as_alice["revenue"] == "11.000000" and as_alice["tokens"] == 9_000_000
    assert not {"cost", "cost_per_mtok", "margin"} & set(as_alice)
    assert as_operator["margin"] is not None and "cost_per_mtok" in as_operator
    # Tenant A's share of S1's cost: 2.7592 × 9,000,000 ÷ 12,756,250
    assert as_operator["cost"] == "1.946716"  # = 1.9467163…
    assert "Zeta" not in json.dumps(as_alice)
    assert "margin" not in home.lower() and "Spend this month" in home


def test_usage_api_shows_a_tenant_exactly_its_attributed_usage(econ, api_client_for) -> None:
    # given a tenant API key of Tenant A, and Zeta's admin
    from rest_framework.test import APIClient

    key_client = APIClient()
    key_client.credentials(HTTP_AUTHORIZATION=f"Bearer {econ.api_key_raw_a}")
    url = reverse("usage-list")
    # when
    by_key = key_client.get(url, {"bucket": "hour"}).json()
    operator_filtered = api_client_for("operator").get(url, {"bucket": "hour", "tenant": "zeta-ai"}).json()
    alice_day = api_client_for("alice").get(url, {"bucket": "day"}).json()
    alice_other = api_client_for("alice").get(url, {"tenant": "zeta-ai"})
    # then: acme's two hours only (6M in, 3M out)
    assert [(r["model"], r["prompt_tokens"], r["generation_tokens"]) for r in by_key["results"]] == [
        ("llama-70b", 2_000_000, 1_000_000), ("llama-70b", 4_000_000, 2_000_000)]
    assert sum(r["prompt_tokens"] for r in alice_day["results"]) == 6_000_000
    # the partner filters by tenant slug: Zeta's llama (2 hours) and qwen (2 hours) rows
    assert sorted((r["model"], r["prompt_tokens"]) for r in operator_filtered["results"]) == [
        ("llama-70b", 1_000_000), ("llama-70b", 1_500_000), ("qwen-7b", 4_000_000), ("qwen-7b", 8_000_000)]
    # another tenant's slug is a 400 that says nothing about it
    assert alice_other.status_code == 400 and "tenant" in alice_other.json()


def test_invoice_pages_csv_and_api(econ, client_for, api_client_for) -> None:
    # given March issued for Zeta, a draft for Tenant A
    zeta_invoice = invoicing.invoice_issue(
        invoice=invoicing.invoice_generate(tenant=econ.zeta, period_start=dt.date(2026, 3, 1), now=APRIL_2),
        by=econ.users["operator"], now=APRIL_2)
    a_draft = invoicing.invoice_generate(tenant=econ.tenant_a, period_start=dt.date(2026, 3, 1), now=APRIL_2)
    # when
    page = client_for("operator").get(reverse("tenants:invoice_detail", args=[zeta_invoice.pk])).content.decode()
    csv_text = client_for("operator").get(reverse("tenants:invoice_csv", args=[zeta_invoice.pk])).content.decode()
    api = api_client_for("operator").get(reverse("invoice-detail", args=[zeta_invoice.pk])).json()
    alice_list = api_client_for("alice").get(reverse("invoice-list")).json()
    alice_draft = client_for("alice").get(reverse("tenants:invoice_detail", args=[a_draft.pk]))
    # then
    assert "INV-2026-0001" in page and "4.30" in page and "1256250" in page
    assert csv_text.splitlines()[-1].endswith(",4.30,")
    assert api["total"] == "4.30" and [line["amount"] for line in api["lines"]] == [
        "1.00", "1.00", "1.00", "0.10", "1.20"]
    assert alice_list["count"] == 0  # Tenant A's invoice is a draft; Zeta's is not hers
    assert alice_draft.status_code == 404


def test_site_economics_page_and_charts_render(econ, client_for) -> None:
    # given
    query = {"range": "custom", "start": "2026-03-02T13:00", "end": "2026-03-02T15:00"}  # Europe/Oslo = UTC+1
    client = client_for("operator")
    # when
    page = client.get(reverse("tenants:economics_site", args=[econ.site1.slug]), query).content.decode()
    whatif = client.get(reverse("tenants:economics_site_chart", args=[econ.site1.slug, "whatif"]), query).json()
    costs = client.get(reverse("tenants:economics_site_chart", args=[econ.site1.slug, "costs"]), query).json()
    portfolio = client.get(reverse("tenants:economics_portfolio"), query).content.decode()
    # then
    assert 'data-live="revenue">13.00<' in page  # revenue 13.005 shown with 2 places (half-even)
    assert "29 %" in page and "not 40 %" in page
    assert [t["name"] for t in whatif["data"]] == ["cost per Mtok at utilization", "now", "pooling 2 tenants"]
    assert whatif["data"][1]["x"] == [50.0]
    assert [t["name"] for t in costs["data"]] == ["energy", "capex amortization", "opex", "revenue"]
    assert "Site A2" in portfolio and "Tenant A Labs" in portfolio


def test_price_plan_api_writes_and_reads_tiers(world, api_client_for) -> None:
    # given
    client = api_client_for("operator")
    payload = {"partner": world.partner_a.pk, "name": "Tiered", "currency": "USD", "effective_from": "2026-01-01",
               "rates": [{"model": "llama", "input_price_per_mtok": "1.00", "output_price_per_mtok": "2.00",
                          "tiers": [{"threshold_tokens": 1_000_000_000, "input_price_per_mtok": "0.80",
                                     "output_price_per_mtok": "1.60"}]}]}
    # when
    created = client.post(reverse("price-plan-list"), payload, format="json")
    bad = client.post(reverse("price-plan-list"), {**payload, "name": "Bad", "rates": [
        {**payload["rates"][0], "tiers": [payload["rates"][0]["tiers"][0]] * 2}]}, format="json")
    # then
    assert created.status_code == 201, created.content
    assert created.json()["rates"][0]["tiers"] == [
        {"threshold_tokens": 1_000_000_000, "input_price_per_mtok": "0.800000", "output_price_per_mtok": "1.600000"}]
    assert bad.status_code == 400 and "same number of tokens" in json.dumps(bad.json())


def test_assigning_a_plan_in_another_currency_is_refused(econ) -> None:
    # given
    from factory_portal.exceptions import ServiceError
    from tenants import services
    from tests import factories

    eur = factories.PricePlanFactory(partner=econ.partner_a, name="Euro plan", currency="EUR")
    # when / then
    with pytest.raises(ServiceError, match="bills in EUR but .* counts in USD"):
        services.tenant_assign_price_plan(tenant=econ.zeta, plan=eur, by=econ.users["operator"])
