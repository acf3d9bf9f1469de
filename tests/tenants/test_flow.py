"""The whole journey with the Django test client: /signup/ → confirmed email → capacity request → pending →
approved by the partner → an allocation → an API key that reads the tenant's allocations."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tenants.models import Allocation, ApiKey, AuditEvent, Tenant
from tests import factories

PASSWORD = "lunar-orbit-cassava-91"


@pytest.mark.django_db(transaction=True)  # real commits: the emails go out from transaction.on_commit
def test_signup_to_approved_tenant_with_allocation_and_api_key():
    # given: one partner with a GPU, and its operator
    partner = factories.PartnerFactory(name="Fjord Compute", slug="fjord")
    operator = factories.UserFactory(username="op")
    factories.MembershipFactory(user=operator, partner=partner, role="operator")
    gpu = factories.GpuFactory(node=factories.NodeFactory(site=factories.SiteFactory(partner=partner)))
    plan = factories.PricePlanFactory(partner=partner, name="Launch")
    browser = Client(enforce_csrf_checks=False)

    # when: the prospective tenant signs up on plain /signup/ (one partner: it is picked)
    page = browser.get("/signup/")
    assert "Sign up with Fjord Compute" in page.content.decode()
    response = browser.post("/signup/", {
        "org_name": "Acme Inference", "full_name": "Ada Admin", "email": "Ada@Acme.example.test",
        "password1": PASSWORD, "password2": PASSWORD,
    })
    # then: logged in, sent to the tenant home which asks for the email confirmation
    assert response.status_code == 302 and response.url == reverse("tenants:tenant_home")
    home = browser.get(response.url).content.decode()
    assert "confirm your email" in home
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ada@acme.example.test"]

    # when: the link in the email is opened
    link = re.search(r"http://testserver(/signup/confirm/\S+/)", mail.outbox[0].body).group(1)
    assert browser.get(link).status_code == 302
    # then: the next step is the capacity request
    assert "tell us what you need" in browser.get("/tenant/").content.decode()

    # when: the capacity request is filed
    start = (timezone.localdate() + dt.timedelta(days=14)).isoformat()
    response = browser.post("/tenant/requests/new/", {
        "models_text": "meta-llama/Llama-3.1-70B-Instruct\nQwen/Qwen2.5-7B-Instruct", "kind": "gpus",
        "gpu_count": "1", "expected_tokens_per_month": "3000000000", "start_date": start,
    })
    assert response.status_code == 302
    # then: the pending page says so clearly
    home = browser.get("/tenant/").content.decode()
    assert "Pending approval" in home and "waiting for the partner's approval" in home

    # when: the partner operator approves, assigns a plan and allocates the GPU
    staff = Client()
    staff.force_login(operator, backend="django.contrib.auth.backends.ModelBackend")
    tenant = Tenant.objects.get(name="Acme Inference")
    assert "Acme Inference" in staff.get("/partner/tenants/").content.decode()
    assert staff.post(f"/partner/tenants/{tenant.slug}/decide/", {"decision": "approve"}).status_code == 302
    assert staff.post(f"/partner/tenants/{tenant.slug}/price-plan/", {"price_plan": plan.pk}).status_code == 302
    request_id = tenant.capacity_requests.get().pk
    assert staff.post(f"/partner/requests/{request_id}/decide/", {"decision": "approve"}).status_code == 302
    response = staff.post(f"/partner/tenants/{tenant.slug}/allocations/new/", {"gpu": gpu.pk})
    assert response.status_code == 302, response.content.decode()[:2000]

    # then: the tenant sees it approved with the allocation
    home = browser.get("/tenant/").content.decode()
    assert "Approved" in home and gpu.node.hostname in home and "Launch" in home

    # when: the tenant admin creates an API key
    page = browser.post("/tenant/api-keys/", {"name": "prod", "expires_in_days": "90"})
    raw = re.search(r'<code id="new-key-value">(fpk_[^<]+)</code>', page.content.decode()).group(1)
    # then: it is shown once and only its hash is stored
    assert page["Cache-Control"] == "no-store"
    key = ApiKey.objects.get(tenant=tenant)
    assert raw not in str(ApiKey.objects.filter(pk=key.pk).values().get())
    assert raw not in browser.get("/tenant/api-keys/").content.decode()

    # when: the key reads the API
    api = Client()
    body = api.get("/api/v1/allocations/", HTTP_AUTHORIZATION=f"Bearer {raw}").json()
    # then: exactly the tenant's allocation
    assert [row["id"] for row in body["results"]] == list(Allocation.objects.filter(tenant=tenant).values_list(
        "pk", flat=True))
    assert body["results"][0]["tenant_name"] == "Acme Inference"
    actions = set(AuditEvent.objects.filter(tenant=tenant).values_list("action", flat=True))
    assert {"tenant.signed_up", "tenant.email_confirmed", "request.filed", "tenant.approved", "tenant.price_plan",
            "request.approved", "allocation.created", "api_key.created"} <= actions
