"""Price plans: per-model rates per million tokens as Decimal, partner scoping, a tenant reads its own plan."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tenants.models import AuditEvent, PricePlan


def formset(rows: list[tuple[str, str, str]], **plan) -> dict:
    data = {"name": "Enterprise", "currency": "EUR", "effective_from": "2026-04-01", "notes": "",
            "rates-TOTAL_FORMS": str(len(rows)), "rates-INITIAL_FORMS": "0", "rates-MIN_NUM_FORMS": "1",
            "rates-MAX_NUM_FORMS": "1000", **plan}
    for i, (model, inp, out) in enumerate(rows):
        data.update({f"rates-{i}-model": model, f"rates-{i}-input_price_per_mtok": inp,
                     f"rates-{i}-output_price_per_mtok": out})
    return data


def test_create_plan_with_rates_on_the_page(world, client_for):
    # when
    response = client_for("operator").post("/partner/price-plans/new/", formset(
        [("meta-llama/Llama-3.1-70B-Instruct", "0.590000", "0.790000"), ("*", "0.1", "0.3")],
        partner=str(world.partner_a.pk)))
    # then
    assert response.status_code == 302
    plan = PricePlan.objects.get(name="Enterprise")
    rate = plan.rate_for("meta-llama/Llama-3.1-70B-Instruct")
    assert (rate.input_price_per_mtok, rate.output_price_per_mtok) == (Decimal("0.59"), Decimal("0.79"))
    assert plan.rate_for("unknown/model").model == "*"
    assert AuditEvent.objects.filter(action="price_plan.created", object_id=str(plan.pk)).exists()


@pytest.mark.parametrize(("rows", "plan", "message"), [
    ([("m", "-0.1", "0.2")], {}, "Prices cannot be negative"),
    ([("m", "abc", "0.2")], {}, "Enter a number"),
    ([("m", "0.1", "0.2")], {"currency": "eu1"}, "three-letter"),
    ([("m", "0.1", "0.2")], {"effective_to": "2026-01-01"}, "must end after it starts"),
    ([("m", "0.1", "0.2"), ("m", "0.2", "0.3")], {}, "duplicate data for model"),
    ([("m", "0.1", "0.2")], {"name": "Standard A"}, "already has a price plan with this name"),
])
def test_bad_plan_input_is_a_form_error(world, client_for, rows, plan, message):
    # when
    response = client_for("operator").post("/partner/price-plans/new/",
                                           formset(rows, partner=str(world.partner_a.pk), **plan))
    # then
    assert response.status_code == 200 and message in response.content.decode()


def test_api_plan_with_rates_and_negative_price_refused(world, api_client_for):
    # given
    client = api_client_for("operator")
    base = {"partner": world.partner_a.pk, "name": "API plan", "currency": "USD", "effective_from": "2026-04-01"}
    # when
    bad = client.post("/api/v1/price-plans/", {**base, "rates": [
        {"model": "*", "input_price_per_mtok": "-1", "output_price_per_mtok": "1"}]}, format="json")
    good = client.post("/api/v1/price-plans/", {**base, "rates": [
        {"model": "*", "input_price_per_mtok": "0.123456", "output_price_per_mtok": "1.5"}]}, format="json")
    # then
    assert bad.status_code == 400 and "input_price_per_mtok" in str(bad.json())
    assert good.status_code == 201 and good.json()["rates"][0]["input_price_per_mtok"] == "0.123456"


def test_tenant_sees_its_own_plan_on_home_and_api(world, client_for, api_client_for):
    # when
    home = client_for("bob").get("/tenant/").content.decode()
    plans = api_client_for("bob").get("/api/v1/price-plans/").json()
    # then
    assert "Standard A" in home and "0.200000 USD" in home
    assert [p["name"] for p in plans["results"]] == ["Standard A"]


def test_assigning_another_partners_plan_is_refused(world, api_client_for):
    # when
    response = api_client_for("operator").patch(f"/api/v1/tenants/{world.tenant_a.pk}/",
                                                {"price_plan": world.plan_b.pk}, format="json")
    # then: partner B's plan does not even exist for partner A's operator
    assert response.status_code == 400 and "does not exist" in str(response.json())
