"""Reads for tenants. Every function scopes through `visible_to(user)` (or the partner-staff subset of it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from sites.choices import WRITE_ROLES
from sites.models import Gpu, MigDevice, Partner, ServingEndpoint
from tenants.choices import RequestStatus, TenantRole, TenantStatus
from tenants.models import (
    Allocation,
    ApiKey,
    AttributionRule,
    AuditEvent,
    CapacityRequest,
    PricePlan,
    Tenant,
    TenantInvitation,
    TenantMembership,
)
from tenants.models.scoping import api_key_tenant_id

User = AbstractBaseUser | AnonymousUser


# ---------------------------------------------------------------- who is this user

def tenant_membership_of(*, user: User) -> TenantMembership | None:
    """The person's tenant membership (a person belongs to one tenant at most)."""
    if not user.is_authenticated or api_key_tenant_id(user) is not None:
        return None
    return TenantMembership.objects.select_related("tenant", "tenant__partner", "tenant__price_plan").filter(
        user_id=user.pk).first()


def is_partner_staff(*, user: User) -> bool:
    from sites.selectors import partner_roles_for

    return user.is_authenticated and (user.is_superuser or bool(partner_roles_for(user=user)))


def user_can_manage_tenant(*, user: User, tenant: Tenant) -> bool:
    """Partner owners/operators of the tenant's partner decide, allocate, price and set rules."""
    return Tenant.objects.writable_by(user).filter(pk=tenant.pk).exists()


def user_is_tenant_admin(*, user: User, tenant_id: int) -> bool:
    if not user.is_authenticated or api_key_tenant_id(user) is not None:
        return False
    return TenantMembership.objects.filter(user_id=user.pk, tenant_id=tenant_id, role=TenantRole.ADMIN).exists()


# ---------------------------------------------------------------- partner side

def partner_tenant_list(*, user: User, status: str | None = None) -> QuerySet[Tenant]:
    qs = (
        Tenant.objects.of_partner_staff(user)
        .select_related("partner", "price_plan")
        .annotate(
            active_allocations=Count("allocations", filter=Q(allocations__ends_at__isnull=True), distinct=True),
            pending_requests=Count("capacity_requests", filter=Q(capacity_requests__status=RequestStatus.PENDING),
                                   distinct=True),
        )
    )
    return qs.filter(status=status) if status else qs


def partner_tenant_get(*, user: User, slug: str) -> Tenant:
    """A tenant of one of the user's partners, or 404 — also for tenant people, who use their own pages."""
    return get_object_or_404(Tenant.objects.of_partner_staff(user).select_related("partner", "price_plan"), slug=slug)


def pending_capacity_requests(*, user: User) -> QuerySet[CapacityRequest]:
    return CapacityRequest.objects.of_partner_staff(user).filter(status=RequestStatus.PENDING).select_related("tenant")


def partners_managed_by(*, user: User) -> QuerySet[Partner]:
    return Partner.objects.writable_by(user)


def allocatable_gpus(*, tenant: Tenant) -> QuerySet[Gpu]:
    return Gpu.objects.filter(node__site__partner_id=tenant.partner_id).select_related("node", "node__site")


def allocatable_mig_devices(*, tenant: Tenant) -> QuerySet[MigDevice]:
    return MigDevice.objects.filter(gpu__node__site__partner_id=tenant.partner_id).select_related("gpu__node")


def allocatable_endpoints(*, tenant: Tenant) -> QuerySet[ServingEndpoint]:
    return ServingEndpoint.objects.filter(site__partner_id=tenant.partner_id).select_related("site")


def attribution_rule_list(*, user: User) -> QuerySet[AttributionRule]:
    return AttributionRule.objects.visible_to(user).select_related("endpoint", "endpoint__site", "tenant")


def partner_rule_list(*, user: User) -> QuerySet[AttributionRule]:
    return AttributionRule.objects.of_partner_staff(user).select_related("endpoint", "endpoint__site", "tenant")


def price_plan_list(*, user: User) -> QuerySet[PricePlan]:
    return PricePlan.objects.visible_to(user).select_related("partner").prefetch_related("rates__tiers")


def partner_price_plan_list(*, user: User) -> QuerySet[PricePlan]:
    return PricePlan.objects.of_partner_staff(user).select_related("partner").prefetch_related("rates__tiers")


def audit_list(*, user: User, tenant: Tenant | None = None) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.visible_to(user).select_related("tenant")
    return qs.filter(tenant=tenant) if tenant is not None else qs


def partner_audit_list(*, user: User) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.of_partner_staff(user).select_related("tenant", "partner")


def partner_writable_ids(*, user: User) -> set[int]:
    from sites.models import Membership

    if not user.is_authenticated:
        return set()
    return set(Membership.objects.filter(user_id=user.pk, role__in=WRITE_ROLES).values_list("partner_id", flat=True))


# ---------------------------------------------------------------- tenant side (and shared)

def allocation_list(*, user: User, tenant: Tenant | None = None) -> QuerySet[Allocation]:
    qs = Allocation.objects.visible_to(user).select_related(
        "tenant", "gpu__node__site", "mig_device__gpu__node", "endpoint__site"
    )
    return qs.filter(tenant=tenant) if tenant is not None else qs


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.visible_to(user).select_related("tenant")


def member_list(*, tenant: Tenant) -> QuerySet[TenantMembership]:
    return TenantMembership.objects.filter(tenant=tenant).select_related("user")


def open_invitations(*, tenant: Tenant) -> QuerySet[TenantInvitation]:
    return TenantInvitation.objects.filter(tenant=tenant, accepted_at__isnull=True, revoked_at__isnull=True)


def capacity_requests_of(*, tenant: Tenant) -> QuerySet[CapacityRequest]:
    return CapacityRequest.objects.filter(tenant=tenant)


def signup_partners() -> QuerySet[Partner]:
    """Partners a prospective tenant can sign up with (every partner, for now)."""
    return Partner.objects.order_by("name")


def tenant_usage_by_model_and_day(*, tenant: Tenant, since: dt.date) -> list[dict]:
    """Attributed tokens per (UTC day, model) of the tenant since `since`, newest day first.

    Read from `TenantUsage` (tenants/metering.py): usage the attribution rules gave this tenant, as metered.
    """
    from django.db.models import Sum
    from django.db.models.functions import TruncDate

    from tenants.models import TenantUsage

    start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    rows = (TenantUsage.objects.filter(tenant=tenant, bucket_start__gte=start)
            .annotate(day=TruncDate("bucket_start", tzinfo=dt.UTC)).values("day", "model")
            .annotate(input_tokens=Sum("prompt_tokens"), output_tokens=Sum("generation_tokens"))
            .order_by("-day", "model"))
    return [r for r in rows if r["input_tokens"] or r["output_tokens"]]


# ---------------------------------------------------------------- attribution

def resolve_tenant(*, rules: Iterable[AttributionRule], labels: dict[str, str], at: dt.datetime) -> int | None:
    """The tenant id a usage series (its labels, at time `at`) belongs to, for rules of ONE endpoint.

    A matching (label, value) rule wins over a whole-endpoint rule; among label rules the one effective latest
    wins (rules of one (label, value) never overlap, so ties only arise across different labels — then the
    label name decides, alphabetically, so the answer is deterministic). No rule → None (unattributed).
    """
    effective = [
        r for r in rules if r.effective_from <= at and (r.effective_to is None or r.effective_to > at)
    ]
    label_hits = sorted(
        (r for r in effective if r.label and labels.get(r.label) == r.value),
        key=lambda r: (r.label, -r.effective_from.timestamp()),
    )
    if label_hits:
        return label_hits[0].tenant_id
    whole = [r for r in effective if not r.label]
    return whole[0].tenant_id if whole else None


def tenant_status_counts(*, user: User) -> dict[str, int]:
    qs = Tenant.objects.of_partner_staff(user)
    counts = dict(qs.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return {s: counts.get(s, 0) for s in TenantStatus.values}


# ---------------------------------------------------------------- invoices (issue 6)

def invoice_list(*, user: User) -> QuerySet:
    """Invoices the user may see: partner staff their tenants', tenant people and API keys their own — issued
    ones only: a draft is the partner's work in progress."""
    from tenants.choices import InvoiceStatus
    from tenants.models import Invoice
    from tenants.models.scoping import partner_ids_of

    qs = Invoice.objects.visible_to(user).select_related("tenant", "partner").prefetch_related("lines")
    if user.is_authenticated and not user.is_superuser:
        qs = qs.filter(~Q(status=InvoiceStatus.DRAFT) | Q(partner__in=partner_ids_of(user)))
    return qs


def invoice_get(*, user: User, pk: int):
    return get_object_or_404(invoice_list(user=user), pk=pk)
