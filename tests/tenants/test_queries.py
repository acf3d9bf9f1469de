"""List endpoints and pages answer in a bounded number of queries, whatever the number of rows."""

from __future__ import annotations

import pytest

from tenants import services
from tests import factories


@pytest.fixture
def many(world):
    op = world.users["operator"]
    for i in range(15):
        tenant = factories.TenantFactory(partner=world.partner_a, price_plan=world.plan_a)
        gpu = factories.GpuFactory(node=world.node_a)
        services.allocation_create(tenant=tenant, by=op, gpu=gpu)
        factories.AttributionRuleFactory(tenant=tenant, endpoint=world.endpoint_a, label="team", value=f"t{i}")
    return world


@pytest.mark.parametrize("url", ["/api/v1/tenants/", "/api/v1/allocations/", "/api/v1/attribution-rules/",
                                 "/api/v1/price-plans/", "/partner/tenants/", "/partner/attribution-rules/",
                                 "/partner/audit/", "/allocations.csv"])
def test_lists_have_bounded_queries(many, url, api_client_for, client_for, django_assert_max_num_queries):
    # given
    client = api_client_for("operator") if url.startswith("/api/") else client_for("operator")
    # when / then
    with django_assert_max_num_queries(12):
        response = client.get(url)
    assert response.status_code == 200
