"""Tenant API keys: hashed at rest, shown once, expiry, revocation, last use, and what a key may do."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from factory_portal.crypto import hash_token
from tenants import services
from tenants.models import ApiKey


def keyed(raw: str, scheme: str = "Bearer") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {raw}")
    return client


def test_key_is_hashed_at_rest_with_a_visible_prefix(world):
    # given
    raw = world.api_key_raw_a
    key = world.api_key_a
    # then
    assert raw.startswith("fpk_") and key.prefix == raw[:12]
    assert key.key_hash == hash_token(raw) and raw not in repr(ApiKey.objects.filter(pk=key.pk).values().get())


@pytest.mark.parametrize("scheme", ["Bearer", "Api-Key"])
def test_key_reads_only_its_tenant(world, scheme):
    # given
    client = keyed(world.api_key_raw_a, scheme)
    # when
    tenants = client.get("/api/v1/tenants/").json()
    allocations = client.get("/api/v1/allocations/").json()
    other = client.get(f"/api/v1/tenants/{world.tenant_b.pk}/")
    sibling = client.get(f"/api/v1/tenants/{world.tenant_pending.pk}/")
    # then
    assert [t["name"] for t in tenants["results"]] == ["Tenant A Labs"]
    assert [a["id"] for a in allocations["results"]] == [world.allocation_a.pk]
    assert other.status_code == sibling.status_code == 404


def test_key_sees_no_partner_inventory_and_cannot_write(world):
    # given
    client = keyed(world.api_key_raw_a)
    # when
    sites = client.get("/api/v1/sites/").json()
    gpu = client.get(f"/api/v1/gpus/{world.gpu_a.pk}/")
    new_key = client.post("/api/v1/api-keys/", {"name": "x"}, format="json")
    suspend = client.post(f"/api/v1/tenants/{world.tenant_a.pk}/suspend/", {}, format="json")
    revoke = client.delete(f"/api/v1/api-keys/{world.api_key_a.pk}/")
    # then
    assert sites["count"] == 0 and gpu.status_code == 404
    assert new_key.status_code == suspend.status_code == revoke.status_code == 403


def test_revoked_and_expired_keys_are_refused(world):
    # given
    alice = world.users["alice"]
    expiring, raw_expiring = services.api_key_create(tenant=world.tenant_a, by=alice, name="short",
                                                     expires_at=timezone.now() + dt.timedelta(days=1))
    services.api_key_revoke(key=world.api_key_a, by=alice)
    # when
    revoked = keyed(world.api_key_raw_a).get("/api/v1/tenants/")
    with time_machine.travel(timezone.now() + dt.timedelta(days=2)):
        expired = keyed(raw_expiring).get("/api/v1/tenants/")
    fine = keyed(raw_expiring).get("/api/v1/tenants/")
    # then
    assert revoked.status_code == expired.status_code == 401
    assert "Invalid, expired or revoked" in revoked.json()["detail"]
    assert fine.status_code == 200


def test_unknown_key_is_401_and_other_bearer_tokens_pass_through(world):
    # when
    unknown = keyed("fpk_not-a-real-key").get("/api/v1/tenants/")
    other = keyed("fpn_node-agent-token").get("/api/v1/tenants/")
    # then: a fpk_ key that does not exist is refused; a non-fpk bearer is not ours to judge (anonymous → 401)
    assert unknown.status_code == 401 and other.status_code == 401


def test_last_used_is_recorded_at_most_once_a_minute(world):
    # given
    t0 = timezone.now()
    client = keyed(world.api_key_raw_a)
    # when
    with time_machine.travel(t0, tick=False):
        client.get("/api/v1/tenants/")
    first = ApiKey.objects.get(pk=world.api_key_a.pk).last_used_at
    with time_machine.travel(t0 + dt.timedelta(seconds=30), tick=False):
        client.get("/api/v1/tenants/")
    second = ApiKey.objects.get(pk=world.api_key_a.pk).last_used_at
    with time_machine.travel(t0 + dt.timedelta(seconds=90), tick=False):
        client.get("/api/v1/tenants/")
    third = ApiKey.objects.get(pk=world.api_key_a.pk).last_used_at
    # then
    assert first == second == t0 and third == t0 + dt.timedelta(seconds=90)


def test_api_create_returns_the_key_once_and_revoke_is_idempotent(world, api_client_for):
    # given
    client = api_client_for("alice")
    # when
    created = client.post("/api/v1/api-keys/", {"name": "etl", "expires_at": "2099-01-01T00:00:00Z"}, format="json")
    listed = client.get(f"/api/v1/api-keys/{created.json()['id']}/").json()
    first = client.delete(f"/api/v1/api-keys/{created.json()['id']}/")
    second = client.delete(f"/api/v1/api-keys/{created.json()['id']}/")
    # then
    assert created.status_code == 201 and created.json()["key"].startswith("fpk_")
    assert "key" not in listed and listed["prefix"] == created.json()["key"][:12]
    assert first.status_code == second.status_code == 204
    assert ApiKey.objects.get(pk=created.json()["id"]).state(timezone.now()) == "revoked"


@pytest.mark.parametrize(("payload", "message"), [
    ({"name": ""}, "blank"),
    ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "in the future"),
    ({"name": "x", "expires_at": "tomorrow"}, "Datetime has wrong format"),
])
def test_api_key_bad_input_is_400(world, api_client_for, payload, message):
    # when
    response = api_client_for("alice").post("/api/v1/api-keys/", payload, format="json")
    # then
    assert response.status_code == 400 and message in str(response.json())


def test_member_sees_keys_but_cannot_create_on_the_page(world, client_for):
    # when
    page = client_for("bob").get("/tenant/api-keys/").content.decode()
    # then
    assert world.api_key_a.prefix in page and "Create a key" not in page
