"""The fixed cast (STYLE.md): operator and viewer at partner A, outsider at partner B.

Apps extend the cast (tenants add alice and charlie) in this file's `world` fixture.
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
    return w


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
