"""The fixed cast (STYLE.md): operator and viewer at partner A, outsider at partner B; alice (admin) and bob
(member) of tenant A, a customer of partner A; charlie (admin) of tenant B, a customer of partner B.

Tenants sit on different partners so every "other side" object (`*_b` for partner A's people and tenant A's
people, `*_a` for partner B's and tenant B's) is invisible to the actor. Isolation between two tenants of the
SAME partner is tested separately (tests/tenants/test_isolation.py adds a sibling tenant of partner A).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sites.choices import PartnerRole
from tests import factories


@dataclass
class World:
    """Two partners with one site each and a little inventory, and the users of the cast."""

    users: dict = field(default_factory=dict)
    objects: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        try:
            return self.objects[name]
        except KeyError:
            raise AttributeError(name) from None


@pytest.fixture
def world(db) -> World:
    w = World()
    partner_a = factories.PartnerFactory(name="Partner A", slug="partner-a")
    partner_b = factories.PartnerFactory(name="Partner B", slug="partner-b")
    for username, partner, role in [
        ("operator", partner_a, PartnerRole.OWNER),
        ("viewer", partner_a, PartnerRole.VIEWER),
        ("outsider", partner_b, PartnerRole.OWNER),
    ]:
        user = factories.UserFactory(username=username)
        factories.MembershipFactory(user=user, partner=partner, role=role)
        w.users[username] = user
    for suffix, partner in (("a", partner_a), ("b", partner_b)):
        site = factories.SiteFactory(partner=partner, name=f"Site {suffix.upper()}", slug=f"site-{suffix}")
        node = factories.NodeFactory(site=site, hostname=f"node-{suffix}")
        gpu = factories.GpuFactory(node=node)
        endpoint = factories.ServingEndpointFactory(site=site, name=f"vllm-{suffix}", node=node)
        w.objects.update({
            f"partner_{suffix}": partner, f"site_{suffix}": site, f"node_{suffix}": node,
            f"gpu_{suffix}": gpu, f"endpoint_{suffix}": endpoint,
        })
    _add_tenants(w)
    return w


def _add_tenants(w: World) -> None:
    """Tenant A (partner A): alice admin, bob member; tenant B (partner B): charlie admin. Each has a price
    plan, a GPU allocation, a whole-endpoint attribution rule, a capacity request and an API key. Partner A also
    has a pending tenant (email confirmed, one pending request) for the decision routes."""
    from tenants import services as tenant_services

    for suffix, admin in (("a", "alice"), ("b", "charlie")):
        partner = w.objects[f"partner_{suffix}"]
        plan = factories.PricePlanFactory(partner=partner, name=f"Standard {suffix.upper()}")
        factories.PriceRateFactory(plan=plan, model=f"model-{suffix}")
        tenant = factories.TenantFactory(partner=partner, name=f"Tenant {suffix.upper()} Labs",
                                         slug=f"tenant-{suffix}", price_plan=plan)
        user = factories.UserFactory(username=admin, email=f"{admin}@tenant-{suffix}.example.test")
        factories.TenantMembershipFactory(user=user, tenant=tenant, role="admin")
        w.users[admin] = user
        request = factories.CapacityRequestFactory(tenant=tenant, models_requested=[f"model-{suffix}"])
        allocation = factories.AllocationFactory(tenant=tenant, gpu=w.objects[f"gpu_{suffix}"], note=f"note-{suffix}")
        rule = factories.AttributionRuleFactory(tenant=tenant, endpoint=w.objects[f"endpoint_{suffix}"])
        key, raw = tenant_services.api_key_create(tenant=tenant, by=user, name=f"key-{suffix}")
        w.objects.update({
            f"plan_{suffix}": plan, f"tenant_{suffix}": tenant, f"request_{suffix}": request,
            f"allocation_{suffix}": allocation, f"rule_{suffix}": rule, f"api_key_{suffix}": key,
            f"api_key_raw_{suffix}": raw,
        })
    bob = factories.UserFactory(username="bob", email="bob@tenant-a.example.test")
    factories.TenantMembershipFactory(user=bob, tenant=w.tenant_a, role="member")
    w.users["bob"] = bob
    pending = factories.TenantFactory(partner=w.partner_a, name="Pending Co", slug="pending-co", status="pending")
    w.objects["tenant_pending"] = pending
    w.objects["request_pending"] = factories.CapacityRequestFactory(tenant=pending, models_requested=["model-p"])


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters live in the cache: every test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api_client_for(world):
    """`api_client_for("viewer")` → an APIClient with that user's token (None → anonymous)."""

    def make(username: str | None) -> APIClient:
        client = APIClient()
        if username:
            token, _ = Token.objects.get_or_create(user=world.users[username])
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def client_for(world, client):
    """`client_for("operator")` → a Django test client logged in as that user (None → anonymous)."""
    from django.test import Client

    def make(username: str | None) -> Client:
        c = Client()
        if username:
            c.force_login(world.users[username], backend="django.contrib.auth.backends.ModelBackend")
        return c

    return make
