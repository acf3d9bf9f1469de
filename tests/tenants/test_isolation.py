"""Two tenants of the SAME partner: tenant A's people never see the sibling, anywhere — pages, lists, detail
URLs (404), API, CSV, error messages, counts. (The matrix covers tenants of different partners.)"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tenants import services
from tests import factories
from tests.test_permission_matrix import CASES


@pytest.fixture
def sibling(world):
    """Sibling Labs: a second customer of partner A, with a GPU, a rule, a key, a request and a member."""
    tenant = factories.TenantFactory(partner=world.partner_a, name="Sibling Labs", slug="sibling-labs")
    user = factories.UserFactory(username="sib", email="sib@sibling.example.test")
    factories.TenantMembershipFactory(user=user, tenant=tenant)
    gpu = factories.GpuFactory(node=world.node_a, uuid="GPU-sibling-0000")
    allocation = services.allocation_create(tenant=tenant, by=world.users["operator"], gpu=gpu, note="sibling-note")
    rule = factories.AttributionRuleFactory(tenant=tenant, endpoint=world.endpoint_a, label="team", value="sib-team")
    key, _ = services.api_key_create(tenant=tenant, by=user, name="sibling-key")
    factories.CapacityRequestFactory(tenant=tenant, models_requested=["sibling-model"])
    return {"tenant": tenant, "allocation": allocation, "rule": rule, "key": key,
            "texts": ["Sibling Labs", "sibling-labs", "GPU-sibling-0000", "sibling-note", "sib-team", "sibling-key",
                      key.prefix, "sibling-model", "sib@sibling.example.test"]}


# Every GET route of the matrix that alice (admin) or bob (member) may read.
READS = [(c, actor) for c in CASES for actor in ("alice", "bob") if c.method == "get" and c.expect.get(actor) == 200]


@pytest.mark.parametrize(("case", "actor"), READS, ids=[f"{c.label}-{a}" for c, a in READS])
def test_tenant_people_never_see_a_sibling_tenant(case, actor, world, sibling, client_for, api_client_for):
    # given
    client = api_client_for(actor) if case.api else client_for(actor)
    url = reverse(case.route, kwargs=case.kwargs(world)) + case.query
    # when
    response = client.get(url, format="json") if case.api else client.get(url)
    # then
    body = response.content.decode()
    assert response.status_code == 200
    leaked = [t for t in sibling["texts"] if t in body]
    assert not leaked, f"{case.label} as {actor} shows {leaked}"


@pytest.mark.parametrize("route", ["tenant-detail", "allocation-detail", "attribution-rule-detail", "api-key-detail"])
def test_sibling_detail_urls_are_404_in_the_api(route, world, sibling, api_client_for):
    # given
    obj = {"tenant-detail": sibling["tenant"], "allocation-detail": sibling["allocation"],
           "attribution-rule-detail": sibling["rule"], "api-key-detail": sibling["key"]}[route]
    # when
    response = api_client_for("alice").get(reverse(route, kwargs={"pk": obj.pk}))
    # then: the same answer as for an id that does not exist
    missing = api_client_for("alice").get(reverse(route, kwargs={"pk": 999999}))
    assert response.status_code == missing.status_code == 404
    assert response.json() == missing.json()


def test_sibling_objects_are_404_on_tenant_pages(world, sibling, client_for):
    # given
    alice = client_for("alice")
    member = sibling["tenant"].memberships.get()
    # when
    revoke = alice.post(reverse("tenants:api_key_revoke", kwargs={"pk": sibling["key"].pk}))
    remove = alice.post(reverse("tenants:member_remove", kwargs={"pk": member.pk}))
    # then
    assert revoke.status_code == remove.status_code == 404
    sibling["key"].refresh_from_db()
    assert sibling["key"].revoked_at is None


def test_counts_do_not_include_the_sibling(world, sibling, api_client_for):
    # when
    counts = {route: api_client_for("alice").get(reverse(route)).json()["count"]
              for route in ("tenant-list", "allocation-list", "attribution-rule-list", "api-key-list")}
    # then: only tenant A's rows (one tenant, one allocation, one rule, one key)
    assert counts == {"tenant-list": 1, "allocation-list": 1, "attribution-rule-list": 1, "api-key-list": 1}


def test_partner_staff_see_both_of_their_tenants(world, sibling, client_for):
    # when
    page = client_for("viewer").get("/partner/tenants/").content.decode()
    # then
    assert "Sibling Labs" in page and "Tenant A Labs" in page and "Tenant B Labs" not in page


def test_tenant_pages_show_no_partner_cost_figures(world, client_for):
    # given: partner A's site economics
    site = world.site_a
    secrets = [f"{site.capex_per_gpu}", f"{site.electricity_price_per_kwh}", f"{site.opex_per_gpu_hour}",
               "capex", "Capex", "PUE", "margin", "kWh"]
    # when
    pages = [client_for("alice").get(url).content.decode() for url in (
        "/tenant/", "/tenant/allocations/", "/tenant/usage/", "/tenant/members/", "/tenant/api-keys/",
        "/tenant/audit/", "/allocations.csv", "/api/v1/allocations/", "/api/v1/tenants/", "/api/v1/price-plans/")]
    # then
    leaked = [s for s in secrets for page in pages if s in page]
    assert not leaked
