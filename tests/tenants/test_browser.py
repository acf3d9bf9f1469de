"""The signup-to-API-key journey in real Chromium (Debian /usr/bin/chromium through Playwright), against a live
server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil

import pytest
from django.core import mail
from django.utils import timezone

from tenants.models import ApiKey, Tenant
from tests import factories

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
PASSWORD = "lunar-orbit-cassava-91"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian chromium is not installed"),
]


@pytest.fixture
def browser_page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test itself are still
    # synchronous and sequential, so Django's async-safety guard is lifted for this test only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # Inside Playwright's event loop Django's connections are per asyncio context (asgiref Local): the
            # ORM calls made here got their own connection, which must be closed here or the test database
            # cannot be dropped at the end of the run.
            from django.db import connections

            connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_signup_to_api_key_in_chromium(live_server, browser_page):
    # given: a partner with a GPU and an operator
    assert live_server.url.startswith("http://localhost") or live_server.url.startswith("http://127.0.0.1")
    partner = factories.PartnerFactory(name="Fjord Compute", slug="fjord")
    operator = factories.UserFactory(username="op@fjord.example.test")
    factories.MembershipFactory(user=operator, partner=partner, role="operator")
    gpu = factories.GpuFactory(node=factories.NodeFactory(site=factories.SiteFactory(partner=partner)))
    tenant_tab = browser_page.new_page()

    # when: the tenant signs up in the browser
    tenant_tab.goto(f"{live_server.url}/signup/")
    tenant_tab.fill("#id_org_name", "Acme Inference")
    tenant_tab.fill("#id_full_name", "Ada Admin")
    tenant_tab.fill("#id_email", "ada@acme.example.test")
    tenant_tab.fill("#id_password1", PASSWORD)
    tenant_tab.fill("#id_password2", PASSWORD)
    tenant_tab.click("text=Create organization")
    # then
    assert "confirm your email" in tenant_tab.content()

    # when: the confirmation link from the email is opened, and the capacity request filed
    link = re.search(r"(http://\S+/signup/confirm/\S+/)", mail.outbox[0].body).group(1)
    tenant_tab.goto(link)
    tenant_tab.click("text=Ask for capacity")
    tenant_tab.fill("#id_models_text", "meta-llama/Llama-3.1-70B-Instruct")
    tenant_tab.fill("#id_gpu_count", "1")
    tenant_tab.fill("#id_expected_tokens_per_month", "3000000000")
    tenant_tab.fill("#id_start_date", (timezone.localdate() + dt.timedelta(days=7)).isoformat())
    tenant_tab.click("text=Save")
    # then
    assert "Pending approval" in tenant_tab.content()

    # when: the operator logs in (another browser context), approves and allocates the GPU
    staff = browser_page.new_context().new_page()
    staff.goto(f"{live_server.url}/accounts/login/")
    staff.fill("#id_username", operator.username)
    staff.fill("#id_password", factories.PASSWORD)
    staff.click("button[type=submit]")
    staff.goto(f"{live_server.url}/partner/tenants/")
    staff.click("#pending >> text=Acme Inference")
    staff.click("#decide >> button[value=approve]")
    staff.click("text=Allocate")
    staff.select_option("#id_gpu", str(gpu.pk))
    staff.click("text=Save")
    # then
    assert Tenant.objects.get(name="Acme Inference").allocations.filter(gpu=gpu).exists()

    # when: the tenant reloads its home and creates an API key
    tenant_tab.goto(f"{live_server.url}/tenant/")
    assert gpu.node.hostname in tenant_tab.content()
    tenant_tab.goto(f"{live_server.url}/tenant/api-keys/")
    tenant_tab.fill("#id_name", "prod")
    tenant_tab.click("text=Create key")
    raw = tenant_tab.inner_text("#new-key-value")
    # then: the key works against the API over loopback
    response = tenant_tab.request.get(f"{live_server.url}/api/v1/allocations/",
                                      headers={"Authorization": f"Bearer {raw}"})
    assert response.status == 200 and response.json()["count"] == 1
    assert ApiKey.objects.get().prefix == raw[:12]
    assert os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] == "true"
