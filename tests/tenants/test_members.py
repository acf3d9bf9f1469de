"""Inviting members by email with a signed link: admin/member roles, single use, forged links refused."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from tenants.models import TenantInvitation, TenantMembership

PASSWORD = "lunar-orbit-cassava-91"


def invite(world, client_for, django_capture_on_commit_callbacks, email: str, role: str = "member") -> str:
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for("alice").post("/tenant/members/", {"email": email, "role": role})
    assert response.status_code == 302
    return re.search(r"http://testserver(/invite/\S+/)", mail.outbox[-1].body).group(1)


def test_invite_new_person_who_creates_an_account(world, client_for, django_capture_on_commit_callbacks):
    # given
    link = invite(world, client_for, django_capture_on_commit_callbacks, "Ivy@Tenant-A.example.test", role="admin")
    browser = Client()
    # when
    page = browser.get(link)
    weak = browser.post(link, {"full_name": "Ivy", "password1": "ivy", "password2": "ivy"})
    joined = browser.post(link, {"full_name": "Ivy Ivers", "password1": PASSWORD, "password2": PASSWORD})
    again = Client().get(link)
    # then
    assert "Join Tenant A Labs" in page.content.decode()
    assert weak.status_code == 200 and "too short" in weak.content.decode()
    assert joined.status_code == 302 and joined.url == "/tenant/"
    membership = TenantMembership.objects.get(user__email="ivy@tenant-a.example.test")
    assert (membership.tenant, membership.role) == (world.tenant_a, "admin")
    assert again.status_code == 400 and "already used" in again.content.decode()


def test_member_cannot_invite_and_bad_email_is_a_form_error(world, client_for):
    # when
    member = client_for("bob").post("/tenant/members/", {"email": "x@example.test", "role": "member"})
    bad = client_for("alice").post("/tenant/members/", {"email": "not-an-email", "role": "owner"})
    # then
    assert member.status_code == 403
    assert bad.status_code == 200 and "valid email" in bad.content.decode() and "valid choice" in bad.content.decode()
    assert not TenantInvitation.objects.exists()


def test_invitation_to_an_existing_account_needs_that_account(world, client_for, django_capture_on_commit_callbacks):
    # given: charlie (tenant B) is invited to tenant A
    link = invite(world, client_for, django_capture_on_commit_callbacks, "charlie@tenant-b.example.test")
    # when
    anonymous = Client().post(link, {})
    as_charlie = client_for("charlie").post(link, {})
    as_bob = client_for("bob").post(link, {})
    # then
    assert "log in first" in anonymous.content.decode()
    assert "already belongs to an organization" in as_charlie.content.decode()
    assert "another email address" in as_bob.content.decode()
    assert not TenantMembership.objects.filter(user=world.users["charlie"], tenant=world.tenant_a).exists()


@pytest.mark.parametrize("token", ["garbage", "eyJpIjoxfQ:1tXyZ:forged"])
def test_forged_invitation_is_refused(world, token):
    # when
    response = Client().get(f"/invite/{token}/")
    # then
    assert response.status_code == 400 and "not valid" in response.content.decode()


def test_admin_removes_member_but_not_the_last_admin(world, client_for):
    # given
    bob = world.users["bob"].tenant_memberships.get()
    alice = world.users["alice"].tenant_memberships.get()
    # when
    removed = client_for("alice").post(f"/tenant/members/{bob.pk}/remove/")
    self_remove = client_for("alice").post(f"/tenant/members/{alice.pk}/remove/", follow=True)
    # then
    assert removed.status_code == 302 and not TenantMembership.objects.filter(pk=bob.pk).exists()
    assert "cannot remove yourself" in self_remove.content.decode()
