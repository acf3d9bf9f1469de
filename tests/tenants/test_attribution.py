"""Attribution rules: resolution (label rule beats whole endpoint, effective dating), conflicts, audit."""

from __future__ import annotations

import datetime as dt

import pytest

from factory_portal.exceptions import ServiceError
from tenants import services
from tenants.models import AttributionRule, AuditEvent
from tenants.selectors import resolve_tenant
from tests import factories

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def rule(tenant_id: int, label: str = "", value: str = "", start=T0, end=None) -> AttributionRule:
    return AttributionRule(tenant_id=tenant_id, label=label, value=value, effective_from=start, effective_to=end)


def test_label_rule_wins_over_whole_endpoint_rule():
    # given: a shared SGLang endpoint: the whole endpoint goes to tenant 1, tenant_id="acme" to tenant 2
    rules = [rule(1), rule(2, "tenant_id", "acme")]
    # when / then
    assert resolve_tenant(rules=rules, labels={"tenant_id": "acme", "model_name": "m"}, at=T0 + DAY) == 2
    assert resolve_tenant(rules=rules, labels={"tenant_id": "other"}, at=T0 + DAY) == 1
    assert resolve_tenant(rules=rules, labels={}, at=T0 + DAY) == 1


def test_rules_are_effective_dated_half_open():
    # given: LiteLLM team "blue" belonged to tenant 1 until T0+2d, to tenant 3 from then on
    rules = [rule(1, "team", "blue", T0, T0 + 2 * DAY), rule(3, "team", "blue", T0 + 2 * DAY)]
    # when / then
    assert resolve_tenant(rules=rules, labels={"team": "blue"}, at=T0) == 1
    assert resolve_tenant(rules=rules, labels={"team": "blue"}, at=T0 + 2 * DAY - dt.timedelta(seconds=1)) == 1
    assert resolve_tenant(rules=rules, labels={"team": "blue"}, at=T0 + 2 * DAY) == 3
    assert resolve_tenant(rules=rules, labels={"team": "blue"}, at=T0 - DAY) is None


def test_no_rule_means_unattributed():
    # when / then
    assert resolve_tenant(rules=[rule(1, "api_key_alias", "prod")], labels={"api_key_alias": "dev"}, at=T0) is None


@pytest.fixture
def approved_b2(world):
    return factories.TenantFactory(partner=world.partner_a, name="Second A", slug="second-a")


def test_overlapping_rule_for_the_same_match_is_refused(world, approved_b2):
    # given: the world's rule sends the whole endpoint A to tenant A from yesterday, open-ended
    new = AttributionRule(endpoint=world.endpoint_a, tenant=approved_b2)
    # when / then
    with pytest.raises(ServiceError, match="already goes to Tenant A Labs"):
        services.attribution_rule_save(rule=new, by=world.users["operator"])


def test_label_rules_with_different_values_coexist_and_are_audited(world, approved_b2):
    # given
    op = world.users["operator"]
    # when
    first = services.attribution_rule_save(rule=AttributionRule(endpoint=world.endpoint_a, tenant=approved_b2,
                                                                label="team", value="red"), by=op)
    second = services.attribution_rule_save(rule=AttributionRule(endpoint=world.endpoint_a, tenant=world.tenant_a,
                                                                 label="team", value="blue"), by=op)
    first.value = "crimson"
    services.attribution_rule_save(rule=first, by=op)
    services.attribution_rule_delete(rule=second, by=op)
    # then
    events = list(AuditEvent.objects.filter(object_type="attributionrule").order_by("pk"))
    assert [e.action for e in events] == ["rule.created", "rule.created", "rule.changed", "rule.deleted"]
    assert events[2].data["before"]["value"] == "red" and events[2].data["after"]["value"] == "crimson"
    assert all(e.actor == op and e.actor_label == "operator" for e in events)


@pytest.mark.parametrize(("fields", "message"), [
    ({"label": "team", "value": ""}, "needs both"),
    ({"label": "", "value": "acme"}, "needs both"),
    ({"label": "bad label", "value": "x"}, "Prometheus label name"),
])
def test_malformed_rules_are_refused(world, approved_b2, fields, message):
    # given
    new = AttributionRule(endpoint=world.endpoint_a, tenant=approved_b2, **fields)
    # when / then
    with pytest.raises(ServiceError, match=message):
        services.attribution_rule_save(rule=new, by=world.users["operator"])


def test_rule_cannot_cross_partners(world):
    # given: endpoint of partner A, tenant of partner B
    new = AttributionRule(endpoint=world.endpoint_a, tenant=world.tenant_b, label="team", value="x")
    # when / then
    with pytest.raises(ServiceError, match="same partner"):
        services.attribution_rule_save(rule=new, by=world.users["operator"])


def test_rule_form_shows_errors_not_500(world, client_for):
    # when
    response = client_for("operator").post("/partner/attribution-rules/new/", {
        "endpoint": world.endpoint_a.pk, "tenant": world.tenant_a.pk, "label": "team", "value": "",
        "effective_from": "2026-05-01T00:00", "effective_to": "2026-04-01T00:00",
    })
    # then
    body = response.content.decode()
    assert response.status_code == 200 and "Give the label" in body


def test_rule_api_overlap_is_a_400_with_message(world, api_client_for):
    # when
    response = api_client_for("operator").post("/api/v1/attribution-rules/", {
        "endpoint": world.endpoint_a.pk, "tenant": world.tenant_a.pk}, format="json")
    # then
    assert response.status_code == 400 and "already goes to" in response.json()["detail"]
