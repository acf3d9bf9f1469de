"""Invoices of the worked example: lines, one half-even rounding per line, numbering, immutability, late usage
as adjustments, attribution changes re-metering only open periods, currency mismatch, idempotency."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
import time_machine
from django.core.exceptions import ValidationError

from factory_portal.exceptions import ServiceError
from telemetry.metering_services import endpoints_scrape, usage_rollup
from tenants import invoicing
from tenants import services as tenant_services
from tenants.metering import tenant_usage_refresh
from tenants.models import InvoiceLine, TenantUsage
from tenants.tasks import invoices_generate_for_month_task, tenant_usage_refresh_task
from tests.economics.scenario import ACME, ZETA, sglang_page

pytestmark = pytest.mark.django_db
MARCH = dt.date(2026, 3, 1)
APRIL = dt.date(2026, 4, 1)
APRIL_2 = dt.datetime(2026, 4, 2, 9, 0, tzinfo=dt.UTC)


def _lines(invoice) -> list[tuple]:
    return [(x.model, x.kind, x.tier_threshold_tokens, x.quantity_tokens, x.unit_price_per_mtok, x.amount,
             x.is_adjustment) for x in invoice.lines.all()]


def test_march_invoices_lines_rounding_and_totals(econ) -> None:
    # when
    a = invoicing.invoice_generate(tenant=econ.tenant_a, period_start=MARCH, now=APRIL_2)
    z = invoicing.invoice_generate(tenant=econ.zeta, period_start=MARCH, now=APRIL_2)
    # then
    assert _lines(a) == [
        ("llama-70b", "input", 0, 4_000_000, D("1.000000"), D("4.00"), False),  # 4M × 1.00
        ("llama-70b", "input", 4_000_000, 2_000_000, D("0.500000"), D("1.00"), False),  # 2M × 0.50
        ("llama-70b", "output", 0, 3_000_000, D("2.000000"), D("6.00"), False),  # 3M × 2.00
    ]
    assert a.total == D("11.00") and a.currency == "USD" and a.status == "draft" and a.number == ""
    assert _lines(z) == [
        ("llama-70b", "input", 0, 2_500_000, D("0.400000"), D("1.00"), False),
        # 1,256,250 × 0.80 ÷ 10⁶ = 1.005 → half-even to 1.00 (half-up would say 1.01)
        ("llama-70b", "output", 0, 1_256_250, D("0.800000"), D("1.00"), False),
        ("qwen-7b", "input", 0, 10_000_000, D("0.100000"), D("1.00"), False),
        ("qwen-7b", "input", 10_000_000, 2_000_000, D("0.050000"), D("0.10"), False),
        ("qwen-7b", "output", 0, 6_000_000, D("0.200000"), D("1.20"), False),
    ]
    # the total is the sum of the rounded lines: 1.00 + 1.00 + 1.00 + 0.10 + 1.20 = 4.30 (not 4.305 rounded)
    assert z.total == sum(x.amount for x in z.lines.all()) == D("4.30")


def test_generation_is_idempotent_and_the_task_twice_changes_nothing(econ) -> None:
    # given
    first = invoicing.invoice_generate(tenant=econ.zeta, period_start=MARCH, now=APRIL_2)
    lines = _lines(first)
    # when
    again = invoicing.invoice_generate(tenant=econ.zeta, period_start=MARCH, now=APRIL_2)
    with time_machine.travel(APRIL_2, tick=False):
        invoices_generate_for_month_task.run("2026-03-01")
        invoices_generate_for_month_task.run("2026-03-01")
        tenant_usage_refresh_task.run("2026-03-01T00:00:00+00:00")
        tenant_usage_refresh_task.run("2026-03-01T00:00:00+00:00")
    # then
    again.refresh_from_db()
    assert again.pk == first.pk and _lines(again) == lines and again.total == D("4.30")
    assert econ.zeta.invoices.count() == 1


def test_issue_numbers_per_partner_and_freezes(econ, world) -> None:
    # given
    a = invoicing.invoice_generate(tenant=econ.tenant_a, period_start=MARCH, now=APRIL_2)
    z = invoicing.invoice_generate(tenant=econ.zeta, period_start=MARCH, now=APRIL_2)
    operator = world.users["operator"]
    # when
    a = invoicing.invoice_issue(invoice=a, by=operator, now=APRIL_2)
    z = invoicing.invoice_issue(invoice=z, by=operator, now=APRIL_2)
    # then
    assert (a.number, z.number) == ("INV-2026-0001", "INV-2026-0002")
    assert a.status == "issued" and a.issued_at == APRIL_2
    with pytest.raises(ServiceError):
        invoicing.invoice_issue(invoice=a, by=operator, now=APRIL_2)
    with pytest.raises(ValidationError):
        line = a.lines.first()
        line.amount = D("0.01")
        line.save()
    assert InvoiceLine.objects.get(pk=a.lines.first().pk).amount == D("4.00")
    # generating an issued month again returns it unchanged
    assert invoicing.invoice_generate(tenant=econ.tenant_a, period_start=MARCH, now=APRIL_2).pk == a.pk
    assert _lines(a)[0][5] == D("4.00") and a.total == D("11.00")
    # paid, then nothing more
    a = invoicing.invoice_mark_paid(invoice=a, by=operator, now=APRIL_2)
    with pytest.raises(ServiceError):
        invoicing.invoice_void(invoice=a, by=operator)


def test_month_not_over_cannot_be_issued(econ, world) -> None:
    # given a draft of March generated on March 20
    draft = invoicing.invoice_generate(tenant=econ.tenant_a, period_start=MARCH,
                                       now=dt.datetime(2026, 3, 20, tzinfo=dt.UTC))
    # when / then
    with pytest.raises(ServiceError, match="once it has ended"):
        invoicing.invoice_issue(invoice=draft, by=world.users["operator"], now=dt.datetime(2026, 3, 20, tzinfo=dt.UTC))


def test_late_usage_becomes_an_adjustment_and_a_rule_change_remeters_only_open_periods(econ, world, server) -> None:
    # given March issued for both tenants
    operator = world.users["operator"]
    for tenant in (econ.tenant_a, econ.zeta):
        invoicing.invoice_issue(invoice=invoicing.invoice_generate(tenant=tenant, period_start=MARCH, now=APRIL_2),
                                by=operator, now=APRIL_2)
    # a poll of 13:50 on March 2 is recorded late (acme +1M input), and one on April 2 (zeta +1M input)
    server.set("/sglang", sglang_page({"acme": (ACME[3][0] + 1_000_000, ACME[3][1]), "zeta": ZETA[3]}))
    with time_machine.travel(dt.datetime(2026, 3, 2, 13, 50, tzinfo=dt.UTC), tick=False):
        endpoints_scrape(endpoint_ids=[econ.shared.pk])
    server.set("/sglang", sglang_page({"acme": (ACME[3][0] + 1_000_000, ACME[3][1]),
                                       "zeta": (ZETA[3][0] + 1_000_000, ZETA[3][1])}))
    with time_machine.travel(APRIL_2, tick=False):
        endpoints_scrape(endpoint_ids=[econ.shared.pk])
    usage_rollup()  # catches up March 2 and April 2
    # and the zeta label is found to belong to Tenant A: the rule is corrected (effective since March 1)
    econ.zeta_rule.tenant = econ.tenant_a
    tenant_services.attribution_rule_save(rule=econ.zeta_rule, by=operator)
    # when
    later = dt.datetime(2026, 5, 1, 9, tzinfo=dt.UTC)
    tenant_usage_refresh(now=later)
    tenant_usage_refresh(now=later)
    april_a = invoicing.invoice_generate(tenant=econ.tenant_a, period_start=APRIL, now=later)
    april_z = invoicing.invoice_generate(tenant=econ.zeta, period_start=APRIL, now=later)
    # then March stays with whom it was billed to: zeta's March hours are Zeta's, though the rule now says A
    zeta_series = TenantUsage.objects.filter(series__labels__tenant_id="zeta")
    assert set(zeta_series.filter(bucket_start__month=3).values_list("tenant__name", flat=True)) == {"Zeta AI"}
    # the open month is re-metered: April's zeta tokens go to Tenant A
    assert list(zeta_series.filter(bucket_start__month=4).values_list("tenant__name", "prompt_tokens")) == [
        ("Tenant A Labs", 1_000_000)]
    # Tenant A's April invoice: the late 1M input of March is billed beyond March's 6M (tier: 0.50) → 0.50,
    # then April's 1M llama-70b input at the base price 1.00 → 1.00; total 1.50
    assert _lines(april_a) == [
        ("llama-70b", "input", 0, 1_000_000, D("1.000000"), D("1.00"), False),
        ("llama-70b", "input", 4_000_000, 1_000_000, D("0.500000"), D("0.50"), True),
    ]
    assert april_a.lines.get(is_adjustment=True).usage_period_start == MARCH
    assert april_a.lines.get(is_adjustment=True).description.startswith("Adjustment for 2026-03")
    assert april_a.total == D("1.50")
    assert april_z.lines.count() == 0 and april_z.total == D(0)


def test_currency_mismatch_is_refused_with_a_message(econ) -> None:
    # given Zeta's plan is in EUR while both sites count in USD
    econ.zeta_plan.currency = "EUR"
    econ.zeta_plan.save()
    # when / then
    with pytest.raises(ServiceError, match="bills in EUR but .* counts in USD"):
        invoicing.invoice_generate(tenant=econ.zeta, period_start=MARCH, now=APRIL_2)
    from tenants import economics_selectors as es
    from tests.economics.scenario import END, START

    with pytest.raises(ServiceError, match="in EUR but Site A2 counts its costs in USD"):
        es.site_economics(site=econ.site2, start=START, end=END)


def test_void_lets_the_month_be_invoiced_again(econ, world) -> None:
    # given
    operator = world.users["operator"]
    issued = invoicing.invoice_issue(
        invoice=invoicing.invoice_generate(tenant=econ.zeta, period_start=MARCH, now=APRIL_2), by=operator,
        now=APRIL_2)
    # when
    invoicing.invoice_void(invoice=issued, by=operator, reason="wrong plan")
    again = invoicing.invoice_generate(tenant=econ.zeta, period_start=MARCH, now=APRIL_2)
    reissued = invoicing.invoice_issue(invoice=again, by=operator, now=APRIL_2)
    # then the voided one keeps its number; the new one gets the next
    assert again.pk != issued.pk and reissued.number == "INV-2026-0002" and reissued.total == D("4.30")


def test_csv_export(econ) -> None:
    # given
    z = invoicing.invoice_generate(tenant=econ.zeta, period_start=MARCH, now=APRIL_2)
    # when
    text = invoicing.invoice_csv(invoice=z)
    # then
    rows = text.strip().splitlines()
    assert len(rows) == 1 + 5 + 1
    assert rows[2].split(",")[11:14] == ["1256250", "0.800000", "1.00"]
    assert rows[-1].endswith(",4.30,")
