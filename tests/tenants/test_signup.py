"""Signup, email confirmation, capacity requests: bad input answers with form errors, never a 500."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import timezone

from tenants import services
from tenants.models import CapacityRequest, Tenant
from tests import factories

PASSWORD = "lunar-orbit-cassava-91"


def signup_data(**overrides) -> dict:
    return {"org_name": "Acme Inference", "full_name": "Ada Admin", "email": "ada@acme.example.test",
            "password1": PASSWORD, "password2": PASSWORD, **overrides}


@pytest.fixture
def partner(db):
    return factories.PartnerFactory(name="Fjord Compute", slug="fjord")


def test_plain_signup_asks_which_partner_when_there_are_several(partner):
    # given
    factories.PartnerFactory(name="Desert Compute", slug="desert")
    # when
    body = Client().get("/signup/").content.decode()
    # then
    assert "/signup/fjord/" in body and "/signup/desert/" in body and "Which provider" in body


def test_partner_signup_link_and_unknown_partner(partner):
    # when
    known = Client().get("/signup/fjord/")
    unknown = Client().get("/signup/nope/")
    # then
    assert "Sign up with Fjord Compute" in known.content.decode()
    assert unknown.status_code == 404


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"email": "taken@example.test"}, "email", "already exists"),
    ({"email": "TAKEN@example.test"}, "email", "already exists"),
    ({"password1": "password", "password2": "password"}, "password1", "too common"),
    ({"password1": "short1", "password2": "short1"}, "password1", "too short"),
    ({"password1": "12345678901234", "password2": "12345678901234"}, "password1", "entirely numeric"),
    ({"password1": "ada@acme.example", "password2": "ada@acme.example"}, "password1", "too similar"),
    ({"password2": "something-else-42"}, "password2", "differ"),
    ({"org_name": ""}, "org_name", "required"),
    ({"email": ""}, "email", "required"),
    ({"email": "not-an-email"}, "email", "valid email"),
])
def test_signup_bad_input_is_a_form_error(partner, overrides, field, message):
    # given
    factories.UserFactory(username="taken", email="taken@example.test")
    # when
    response = Client().post("/signup/", signup_data(**overrides))
    # then
    assert response.status_code == 200
    assert message in " ".join(str(e) for e in response.context["form"].errors[field])
    assert not Tenant.objects.exists()


def test_signup_with_an_existing_organization_name_is_a_form_error(partner):
    # given
    factories.TenantFactory(partner=partner, name="Acme Inference")
    # when
    response = Client().post("/signup/", signup_data(org_name="acme inference"))
    # then
    assert "already registered" in str(response.context["form"].errors["org_name"])


def test_signup_creates_pending_tenant_with_admin_and_login_by_email(partner):
    # when
    Client().post("/signup/", signup_data(email="Ada@ACME.example.test"))
    # then
    tenant = Tenant.objects.get()
    user = get_user_model().objects.get()
    assert (tenant.status, tenant.email_confirmed, tenant.partner) == ("pending", False, partner)
    assert tenant.memberships.get().role == "admin" and user.username == "ada@acme.example.test"
    login = Client().post("/accounts/login/", {"username": "ada@acme.example.test", "password": PASSWORD})
    assert login.status_code == 302


@override_settings(HTML_RATE_LIMITS={"signup": "3/hour", "token": "30/hour"})
def test_signup_posts_are_rate_limited_per_address(partner):
    # given: fresh browsers from one address (a signed-up browser is logged in and sent home instead)
    def attempt(i: int) -> int:
        return Client().post("/signup/", signup_data(email=f"u{i}@x.example.test", org_name=f"Org {i}")).status_code

    # when
    statuses = [attempt(i) for i in range(4)]
    # then: three attempts pass (each creates a tenant → 302), the fourth is refused
    assert statuses == [302, 302, 302, 429]
    assert Tenant.objects.count() == 3


def test_confirmation_link_is_idempotent_and_rejects_forgery_and_expiry(partner):
    # given
    tenant, _ = services.tenant_signup(partner=partner, org_name="Acme", email="a@acme.example.test",
                                       password=PASSWORD)
    token = services.email_confirmation_token(tenant=tenant)
    # when
    first = Client().get(f"/signup/confirm/{token}/")
    second = Client().get(f"/signup/confirm/{token}/")
    forged = Client().get(f"/signup/confirm/{token[:-2]}xx/")
    # then
    assert first.status_code == second.status_code == 200
    tenant.refresh_from_db()
    assert tenant.email_confirmed
    assert forged.status_code == 400 and "not valid" in forged.content.decode()
    # and: a link older than three days is refused
    with time_machine.travel(timezone.now() + dt.timedelta(days=4)):
        expired = Client().get(f"/signup/confirm/{token}/")
    assert expired.status_code == 400 and "expired" in expired.content.decode()


@pytest.fixture
def tenant_admin(partner):
    tenant = factories.TenantFactory(partner=partner, status="pending")
    user = factories.UserFactory(username="ada")
    factories.TenantMembershipFactory(user=user, tenant=tenant, role="admin")
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return tenant, client


def request_data(**overrides) -> dict:
    start = (timezone.localdate() + dt.timedelta(days=10)).isoformat()
    return {"models_text": "meta-llama/Llama-3.1-8B-Instruct", "kind": "gpus", "gpu_count": "2",
            "expected_tokens_per_month": "1000000", "start_date": start, **overrides}


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"gpu_count": "-3"}, "gpu_count", "greater than or equal to 1"),
    ({"gpu_count": "0"}, "gpu_count", "greater than or equal to 1"),
    ({"gpu_count": ""}, "gpu_count", "How many GPUs"),
    ({"gpu_count": "many"}, "gpu_count", "whole number"),
    ({"start_date": "2020-01-01"}, "start_date", "cannot be in the past"),
    ({"start_date": "31/31/2031"}, "start_date", "valid date"),
    ({"expected_tokens_per_month": "-5"}, "expected_tokens_per_month", "greater than or equal to 1"),
    ({"expected_tokens_per_month": "9" * 30}, "expected_tokens_per_month", "less than or equal to"),
    ({"models_text": " , \n"}, "models_text", "at least one model"),
    ({"kind": "mig", "mig_profile": "", "mig_count": "2"}, "mig_profile", "Choose a MIG profile"),
    ({"kind": "mig", "mig_profile": "9g.1tb", "mig_count": "2"}, "mig_profile", "valid choice"),
    ({"kind": "mig", "mig_profile": "1g.10gb", "mig_count": "-1"}, "mig_count", "greater than or equal to 1"),
])
def test_absurd_capacity_request_is_a_form_error(tenant_admin, overrides, field, message):
    # given
    tenant, client = tenant_admin
    # when
    response = client.post("/tenant/requests/new/", request_data(**overrides))
    # then
    assert response.status_code == 200
    assert message in " ".join(str(e) for e in response.context["form"].errors[field])
    assert not CapacityRequest.objects.exists()


def test_mig_capacity_request_is_stored(tenant_admin):
    # given
    tenant, client = tenant_admin
    # when
    response = client.post("/tenant/requests/new/", request_data(kind="mig", mig_profile="3g.40gb", mig_count="4",
                                                                 gpu_count="7"))
    # then: the GPU count of the other choice is dropped
    assert response.status_code == 302
    request = CapacityRequest.objects.get()
    assert (request.gpu_count, request.mig_profile, request.mig_count) == (None, "3g.40gb", 4)
    assert request.capacity_label == "4 × MIG 3g.40gb"


def test_capacity_request_needs_a_confirmed_email(tenant_admin):
    # given
    tenant, client = tenant_admin
    Tenant.objects.filter(pk=tenant.pk).update(email_confirmed_at=None)
    # when
    response = client.post("/tenant/requests/new/", request_data())
    # then
    assert "Confirm your email" in response.content.decode()
    assert not CapacityRequest.objects.exists()
