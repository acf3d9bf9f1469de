"""Allocations: history kept, the same GPU/MIG hardware never held twice at once, suspension stops new ones."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.utils import timezone

from factory_portal.exceptions import ServiceError
from tenants import services
from tenants.models import Allocation
from tests import factories

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def setup(world):
    partner = world.partner_a
    other = factories.TenantFactory(partner=partner, name="Other Co", slug="other-co")
    mig_gpu = factories.GpuFactory(node=world.node_a, mig_mode=True)
    mig = factories.MigDeviceFactory(gpu=mig_gpu, profile="3g.40gb", compute_slices=3)
    return world, other, mig_gpu, mig


def test_same_gpu_cannot_go_to_two_tenants_at_once(setup):
    # given: the world's GPU A is held by tenant A since yesterday, open-ended
    world, other, _, _ = setup
    # when / then
    with pytest.raises(ServiceError, match=r"already allocated to Tenant A Labs"):
        services.allocation_create(tenant=other, by=world.users["operator"], gpu=world.gpu_a)
    assert Allocation.objects.filter(gpu=world.gpu_a).count() == 1


def test_overlap_is_refused_with_a_message_on_the_page(setup, client_for):
    # given
    world, other, _, _ = setup
    # when
    response = client_for("operator").post(f"/partner/tenants/{other.slug}/allocations/new/", {"gpu": world.gpu_a.pk})
    # then
    assert response.status_code == 200
    assert "is already allocated to Tenant A Labs" in response.content.decode()


def test_history_is_kept_and_the_gpu_is_free_after_the_end(setup):
    # given
    world, other, _, _ = setup
    ended = services.allocation_end(allocation=world.allocation_a, by=world.users["operator"])
    # when
    new = services.allocation_create(tenant=other, by=world.users["operator"], gpu=world.gpu_a)
    # then
    assert ended.ends_at is not None and Allocation.objects.filter(gpu=world.gpu_a).count() == 2
    assert new.starts_at >= ended.ends_at
    with pytest.raises(ServiceError, match="already ended"):
        services.allocation_end(allocation=ended, by=world.users["operator"])


def test_future_windows_that_do_not_touch_are_allowed_and_touching_is_half_open(setup):
    # given
    world, other, mig_gpu, _ = setup
    op = world.users["operator"]
    services.allocation_create(tenant=world.tenant_a, by=op, gpu=mig_gpu, starts_at=T0,
                               ends_at=T0 + dt.timedelta(days=1))
    # when: [T0+1d, T0+2d) starts exactly where the first ends
    second = services.allocation_create(tenant=other, by=op, gpu=mig_gpu, starts_at=T0 + dt.timedelta(days=1),
                                        ends_at=T0 + dt.timedelta(days=2))
    # then
    assert second.pk
    with pytest.raises(ServiceError, match="already allocated to Other Co"):
        services.allocation_create(tenant=world.tenant_a, by=op, gpu=mig_gpu, starts_at=T0 + dt.timedelta(hours=36))


def test_whole_gpu_and_its_mig_slice_conflict_both_ways(setup):
    # given
    world, other, mig_gpu, mig = setup
    op = world.users["operator"]
    services.allocation_create(tenant=other, by=op, mig_device=mig)
    # when / then
    with pytest.raises(ServiceError, match="MIG .* already allocated to Other Co"):
        services.allocation_create(tenant=world.tenant_a, by=op, gpu=mig_gpu)
    with pytest.raises(ServiceError, match="already allocated"):
        services.allocation_create(tenant=world.tenant_a, by=op, mig_device=mig)


def test_an_endpoint_is_shared_between_tenants_but_not_held_twice_by_one(setup):
    # given
    world, other, _, _ = setup
    op = world.users["operator"]
    services.allocation_create(tenant=world.tenant_a, by=op, endpoint=world.endpoint_a)
    # when
    shared = services.allocation_create(tenant=other, by=op, endpoint=world.endpoint_a)
    # then
    assert shared.pk
    with pytest.raises(ServiceError, match="already allocated to this tenant"):
        services.allocation_create(tenant=other, by=op, endpoint=world.endpoint_a)


@pytest.mark.parametrize(("change", "message"), [
    ({"suspended_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}, "suspended"),
    ({"status": "pending"}, "Only an approved tenant"),
    ({"status": "rejected"}, "Only an approved tenant"),
])
def test_suspended_or_unapproved_tenants_get_no_new_allocations(setup, change, message):
    # given
    world, other, mig_gpu, _ = setup
    type(other).objects.filter(pk=other.pk).update(**change)
    # when / then
    with pytest.raises(ServiceError, match=message):
        services.allocation_create(tenant=other, by=world.users["operator"], gpu=mig_gpu)


def test_suspension_is_shown_on_the_tenants_pages(world, client_for):
    # given
    services.tenant_suspend(tenant=world.tenant_a, by=world.users["operator"], reason="invoice 42 unpaid")
    # when
    pages = [client_for("bob").get(url).content.decode() for url in ("/tenant/", "/tenant/allocations/",
                                                                        "/tenant/api-keys/")]
    # then
    assert all("Suspended" in page and "invoice 42 unpaid" in page for page in pages)


def test_another_partners_gpu_cannot_be_allocated(setup):
    # given
    world, other, _, _ = setup
    # when / then
    with pytest.raises(ServiceError, match="belongs to another partner"):
        services.allocation_create(tenant=other, by=world.users["operator"], gpu=world.gpu_b)


def test_allocation_needs_exactly_one_target_on_the_page_and_api(setup, client_for, api_client_for):
    # given
    world, other, mig_gpu, mig = setup
    # when
    page = client_for("operator").post(f"/partner/tenants/{other.slug}/allocations/new/",
                                       {"gpu": mig_gpu.pk, "mig_device": mig.pk})
    api = api_client_for("operator").post("/api/v1/allocations/", {"tenant": other.pk}, format="json")
    # then
    assert "exactly one" in page.content.decode()
    assert api.status_code == 400 and "exactly one" in str(api.json())


def test_postgres_exclusion_constraint_refuses_overlap_written_around_the_service(setup):
    # given: a row written directly, as a buggy script would
    world, other, _, _ = setup
    assert connection.vendor == "postgresql"
    # when / then
    with pytest.raises(IntegrityError, match="tenants_allocation_gpu_no_overlap"), transaction.atomic():
        Allocation.objects.create(tenant=other, gpu=world.gpu_a, starts_at=timezone.now())


@pytest.mark.django_db(transaction=True)
def test_concurrent_allocations_of_one_gpu_serialize_and_one_wins():
    # given: two tenants of one partner, one free GPU, two threads allocating it at the same moment
    partner = factories.PartnerFactory()
    operator = factories.UserFactory(username="op")
    factories.MembershipFactory(user=operator, partner=partner)
    gpu = factories.GpuFactory(node=factories.NodeFactory(site=factories.SiteFactory(partner=partner)))
    tenants = [factories.TenantFactory(partner=partner) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[str] = []

    def allocate(tenant) -> None:
        barrier.wait()
        try:
            services.allocation_create(tenant=tenant, by=operator, gpu=gpu)
            results.append("ok")
        except ServiceError as exc:
            results.append(exc.message)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=allocate, args=(t,)) for t in tenants]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert sorted(results)[0].startswith("GPU") and sorted(results)[1] == "ok"
    assert Allocation.objects.filter(gpu=gpu).count() == 1


def test_allocations_csv_is_scoped(world, client_for):
    # when
    alice = client_for("alice").get("/allocations.csv").content.decode()
    operator = client_for("operator").get("/allocations.csv").content.decode()
    # then
    assert world.gpu_a.uuid in alice and world.gpu_b.uuid not in alice and "Tenant B" not in alice
    assert alice.splitlines()[0] == "tenant,kind,target,uuid,starts_at,ends_at,note"
    assert len(operator.splitlines()) == 2 and world.gpu_a.uuid in operator


def test_page_approve_reject_and_reason_required(world, client_for):
    # given
    client = client_for("operator")
    # when
    no_reason = client.post("/partner/tenants/pending-co/decide/", {"decision": "reject"}, follow=True)
    rejected = client.post("/partner/tenants/pending-co/decide/", {"decision": "reject", "reason": "no fit"},
                           follow=True)
    # then
    assert "Give the reason" in no_reason.content.decode()
    world.tenant_pending.refresh_from_db()
    assert rejected.status_code == 200 and world.tenant_pending.status == "rejected"
    assert world.tenant_pending.rejection_reason == "no fit"
    assert world.request_pending.__class__.objects.get(pk=world.request_pending.pk).status == "rejected"


def test_rejected_tenant_sees_the_reason(world, client_for):
    # given
    membership_user = factories.UserFactory(username="pat")
    factories.TenantMembershipFactory(user=membership_user, tenant=world.tenant_pending)
    services.tenant_reject(tenant=world.tenant_pending, by=world.users["operator"], reason="Region full until Q3")
    c = Client()
    c.force_login(membership_user, backend="django.contrib.auth.backends.ModelBackend")
    # when
    page = c.get("/tenant/").content.decode()
    # then
    assert "Signup rejected" in page and "Region full until Q3" in page
