"""Writes for tenants. Views, API and forms call these; the caller has checked the role (selectors), these
check the business rules and raise ServiceError with a message that is safe to show."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from factory_portal.crypto import hash_token, new_token
from factory_portal.exceptions import ServiceError
from sites.models import Gpu, MigDevice, Partner, ServingEndpoint
from tenants import tokens
from tenants.authentication import API_KEY_PREFIX
from tenants.choices import AuditAction, RequestStatus, TenantRole, TenantStatus
from tenants.models import (
    Allocation,
    ApiKey,
    AttributionRule,
    AuditEvent,
    CapacityRequest,
    PricePlan,
    PriceRate,
    PriceTier,
    Tenant,
    TenantInvitation,
    TenantMembership,
)

Actor = AbstractBaseUser | AnonymousUser
API_KEY_PREFIX_LEN = 12  # "fpk_" + 8 characters of the secret: enough to tell keys apart, useless to guess
API_KEY_TOUCH_EVERY = dt.timedelta(minutes=1)


# ---------------------------------------------------------------- audit

def audit_record(*, actor: Actor | None, action: str, obj: Model, summary: str, partner: Partner | None = None,
                 tenant: Tenant | None = None, data: dict[str, Any] | None = None) -> AuditEvent:
    """Append one audit event; partner/tenant default to the object's own."""
    if tenant is None and isinstance(obj, Tenant):
        tenant = obj
    if tenant is None and getattr(obj, "tenant_id", None):
        tenant = obj.tenant
    if partner is None:
        partner = tenant.partner if tenant is not None else obj.partner
    person = actor if actor is not None and actor.is_authenticated and actor.pk else None
    if person is not None:
        label = person.get_username()
    elif actor is not None and getattr(actor, "api_key_prefix", None):
        label = f"API key {actor.api_key_prefix}…"
    else:
        label = "anonymous" if actor is not None else "system"
    return AuditEvent.objects.create(
        partner=partner, tenant=tenant, actor=person, actor_label=label, action=action,
        object_type=obj._meta.model_name, object_id=str(obj.pk), summary=summary[:500], data=data or {},
    )


# ---------------------------------------------------------------- signup and email confirmation

def unique_tenant_slug(*, name: str) -> str:
    base = slugify(name)[:70] or "tenant"
    slug, n = base, 2
    while Tenant.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def email_taken(*, email: str) -> bool:
    users = get_user_model().objects
    return users.filter(Q(email__iexact=email) | Q(username__iexact=email)).exists()


def user_create(*, email: str, password: str, full_name: str = "") -> AbstractBaseUser:
    """A person who logs in with their email address; the password must pass the configured validators."""
    email = email.strip().lower()
    if email_taken(email=email):
        raise ServiceError("An account with this email already exists. Log in instead.", field="email")
    first, _, last = full_name.strip().partition(" ")
    user = get_user_model()(username=email, email=email, first_name=first[:150], last_name=last[:150])
    try:
        password_validation.validate_password(password, user=user)
    except ValidationError as exc:
        raise ServiceError(" ".join(exc.messages), field="password") from exc
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # a concurrent signup with the same email won the race
        raise ServiceError("An account with this email already exists. Log in instead.", field="email") from None
    return user


@transaction.atomic
def tenant_signup(*, partner: Partner, org_name: str, email: str, password: str,
                  full_name: str = "") -> tuple[Tenant, AbstractBaseUser]:
    """Create the organization (pending, email unconfirmed) and its first admin."""
    org_name = org_name.strip()
    if not org_name:
        raise ServiceError("Give your organization's name.", field="org_name")
    if Tenant.objects.filter(partner=partner, name__iexact=org_name).exists():
        raise ServiceError("An organization with this name is already registered here.", field="org_name")
    user = user_create(email=email, password=password, full_name=full_name)
    tenant = Tenant.objects.create(partner=partner, name=org_name, slug=unique_tenant_slug(name=org_name),
                                   contact_email=user.email)
    TenantMembership.objects.create(user=user, tenant=tenant, role=TenantRole.ADMIN)
    audit_record(actor=user, action=AuditAction.TENANT_SIGNED_UP, obj=tenant,
                 summary=f"{org_name} signed up ({user.email})")
    return tenant, user


def email_confirmation_token(*, tenant: Tenant) -> str:
    return tokens.make_token({"t": tenant.pk, "e": tenant.contact_email}, salt=tokens.EMAIL_CONFIRM_SALT)


def tenant_send_confirmation(*, tenant: Tenant, confirm_url: str) -> None:
    """Email the confirmation link after commit (a rolled-back signup sends nothing)."""
    body = (
        f"Welcome to Factory Portal.\n\nConfirm the email address of {tenant.name} by opening this link "
        f"(valid for {tokens.EMAIL_CONFIRM_MAX_AGE_S // 86400} days):\n\n{confirm_url}\n\n"
        "If you did not sign up, ignore this message."
    )
    transaction.on_commit(lambda: send_mail("Confirm your email — Factory Portal", body, None,
                                            [tenant.contact_email]))


@transaction.atomic
def tenant_confirm_email(*, token: str) -> Tenant:
    """Mark the tenant's contact email confirmed. Idempotent: a second click changes nothing."""
    try:
        payload = tokens.read_token(token, salt=tokens.EMAIL_CONFIRM_SALT, max_age_s=tokens.EMAIL_CONFIRM_MAX_AGE_S)
    except tokens.BadToken as exc:
        raise ServiceError(str(exc)) from exc
    tenant = Tenant.objects.select_for_update().filter(pk=payload.get("t")).first()
    if tenant is None or tenant.contact_email != payload.get("e"):
        raise ServiceError("This link is not valid. Copy the whole link from the email.")
    if tenant.email_confirmed_at is None:
        tenant.email_confirmed_at = timezone.now()
        tenant.save(update_fields=["email_confirmed_at", "updated_at"])
        audit_record(actor=None, action=AuditAction.TENANT_EMAIL_CONFIRMED, obj=tenant,
                     summary=f"{tenant.contact_email} confirmed")
    return tenant


# ---------------------------------------------------------------- capacity requests

@transaction.atomic
def capacity_request_create(*, tenant: Tenant, by: Actor, models_requested: list[str], expected_tokens_per_month: int,
                            start_date: dt.date, gpu_count: int | None = None, mig_profile: str = "",
                            mig_count: int | None = None, notes: str = "") -> CapacityRequest:
    if not tenant.email_confirmed:
        raise ServiceError("Confirm your email address before asking for capacity.")
    if tenant.status == TenantStatus.REJECTED:
        raise ServiceError("This organization's signup was rejected; it cannot ask for capacity.")
    if start_date < timezone.localdate():
        raise ServiceError("The start date cannot be in the past.", field="start_date")
    request = CapacityRequest(
        tenant=tenant, models_requested=models_requested, gpu_count=gpu_count, mig_profile=mig_profile,
        mig_count=mig_count, expected_tokens_per_month=expected_tokens_per_month, start_date=start_date, notes=notes,
    )
    try:
        request.full_clean()
    except ValidationError as exc:
        raise ServiceError(" ".join(exc.messages)) from exc
    request.save()
    audit_record(actor=by, action=AuditAction.REQUEST_FILED, obj=request,
                 summary=f"{tenant.name} asked for {request.capacity_label} from {start_date}")
    return request


@transaction.atomic
def capacity_request_decide(*, request: CapacityRequest, by: Actor, approve: bool, reason: str = "") -> (
        CapacityRequest):
    request = CapacityRequest.objects.select_for_update().get(pk=request.pk)
    if request.status != RequestStatus.PENDING:
        raise ServiceError(f"This request was already {request.get_status_display().lower()}.")
    if not approve and not reason.strip():
        raise ServiceError("Give the reason for rejecting the request.", field="reason")
    request.status = RequestStatus.APPROVED if approve else RequestStatus.REJECTED
    request.decision_reason = reason.strip()
    request.decided_at = timezone.now()
    request.decided_by = by if by.pk else None
    request.save(update_fields=["status", "decision_reason", "decided_at", "decided_by", "updated_at"])
    action = AuditAction.REQUEST_APPROVED if approve else AuditAction.REQUEST_REJECTED
    audit_record(actor=by, action=action, obj=request,
                 summary=f"Request {request.capacity_label} {request.status}" + (f": {reason}" if reason else ""))
    return request


# ---------------------------------------------------------------- tenant decisions

def _locked(tenant: Tenant) -> Tenant:
    return Tenant.objects.select_for_update().select_related("partner").get(pk=tenant.pk)


@transaction.atomic
def tenant_approve(*, tenant: Tenant, by: Actor, reason: str = "", price_plan: PricePlan | None = None) -> Tenant:
    tenant = _locked(tenant)
    if tenant.status == TenantStatus.APPROVED:
        raise ServiceError("This tenant is already approved.")
    if not tenant.email_confirmed:
        raise ServiceError("The tenant has not confirmed its email address yet.")
    tenant.status = TenantStatus.APPROVED
    tenant.decision_reason = reason.strip()
    tenant.decided_at = timezone.now()
    tenant.decided_by = by if by.pk else None
    tenant.save(update_fields=["status", "decision_reason", "decided_at", "decided_by", "updated_at"])
    audit_record(actor=by, action=AuditAction.TENANT_APPROVED, obj=tenant,
                 summary=f"{tenant.name} approved" + (f": {reason}" if reason else ""))
    if price_plan is not None:
        tenant = tenant_assign_price_plan(tenant=tenant, plan=price_plan, by=by)
    return tenant


@transaction.atomic
def tenant_reject(*, tenant: Tenant, by: Actor, reason: str) -> Tenant:
    tenant = _locked(tenant)
    if not reason.strip():
        raise ServiceError("Give the reason for rejecting the tenant; they will see it.", field="reason")
    if tenant.status != TenantStatus.PENDING:
        raise ServiceError("Only a pending tenant can be rejected; suspend an approved one instead.")
    tenant.status = TenantStatus.REJECTED
    tenant.decision_reason = reason.strip()
    tenant.decided_at = timezone.now()
    tenant.decided_by = by if by.pk else None
    tenant.save(update_fields=["status", "decision_reason", "decided_at", "decided_by", "updated_at"])
    tenant.capacity_requests.filter(status=RequestStatus.PENDING).update(
        status=RequestStatus.REJECTED, decision_reason=reason.strip(), decided_at=tenant.decided_at,
        decided_by=tenant.decided_by,
    )
    audit_record(actor=by, action=AuditAction.TENANT_REJECTED, obj=tenant, summary=f"{tenant.name} rejected: {reason}")
    return tenant


@transaction.atomic
def tenant_suspend(*, tenant: Tenant, by: Actor, reason: str = "") -> Tenant:
    """Suspended tenants get no new allocations; existing ones stay (history and running work) until ended."""
    tenant = _locked(tenant)
    if tenant.is_suspended:
        raise ServiceError("This tenant is already suspended.")
    tenant.suspended_at = timezone.now()
    tenant.suspension_reason = reason.strip()
    tenant.save(update_fields=["suspended_at", "suspension_reason", "updated_at"])
    audit_record(actor=by, action=AuditAction.TENANT_SUSPENDED, obj=tenant,
                 summary=f"{tenant.name} suspended" + (f": {reason}" if reason else ""))
    return tenant


@transaction.atomic
def tenant_unsuspend(*, tenant: Tenant, by: Actor) -> Tenant:
    tenant = _locked(tenant)
    if not tenant.is_suspended:
        raise ServiceError("This tenant is not suspended.")
    tenant.suspended_at = None
    tenant.suspension_reason = ""
    tenant.save(update_fields=["suspended_at", "suspension_reason", "updated_at"])
    audit_record(actor=by, action=AuditAction.TENANT_UNSUSPENDED, obj=tenant, summary=f"{tenant.name} unsuspended")
    return tenant


def _check_plan_currency(*, tenant: Tenant, currency: str) -> None:
    """Revenue and cost meet in one currency: a plan must bill in the currency of the sites the tenant uses."""
    from sites.models import Site

    used = Site.objects.filter(
        Q(endpoints__attribution_rules__tenant=tenant) | Q(nodes__gpus__allocations__tenant=tenant)
        | Q(endpoints__allocations__tenant=tenant)
    ).exclude(currency=currency).distinct().first()
    if used is not None:
        raise ServiceError(f"This plan bills in {currency} but {used.name}, where {tenant.name} is served, counts in "
                           f"{used.currency}. Choose a plan in {used.currency}.", field="price_plan")


@transaction.atomic
def tenant_assign_price_plan(*, tenant: Tenant, plan: PricePlan | None, by: Actor) -> Tenant:
    tenant = _locked(tenant)
    if plan is not None and plan.partner_id != tenant.partner_id:
        raise ServiceError("Choose one of this partner's price plans.", field="price_plan")
    if plan is not None:
        _check_plan_currency(tenant=tenant, currency=plan.currency)
    old = tenant.price_plan
    tenant.price_plan = plan
    tenant.save(update_fields=["price_plan", "updated_at"])
    audit_record(actor=by, action=AuditAction.TENANT_PRICE_PLAN, obj=tenant,
                 summary=f"{tenant.name}: price plan {old or 'none'} → {plan or 'none'}",
                 data={"from": old.pk if old else None, "to": plan.pk if plan else None})
    return tenant


# ---------------------------------------------------------------- allocations

def _overlapping(qs: QuerySet[Allocation], starts_at: dt.datetime, ends_at: dt.datetime | None) -> (
        QuerySet[Allocation]):
    """Allocations whose [starts_at, ends_at) meets the given one (an open end is +infinity)."""
    qs = qs.filter(Q(ends_at__isnull=True) | Q(ends_at__gt=starts_at))
    return qs.filter(starts_at__lt=ends_at) if ends_at is not None else qs


def _held_by(conflict: Allocation) -> str:
    until = f" until {conflict.ends_at:%Y-%m-%d %H:%M} UTC" if conflict.ends_at else ""
    return f"{conflict.target_label} is already allocated to {conflict.tenant.name}{until}."


@transaction.atomic
def allocation_create(*, tenant: Tenant, by: Actor, gpu: Gpu | None = None, mig_device: MigDevice | None = None,
                      endpoint: ServingEndpoint | None = None, starts_at: dt.datetime | None = None,
                      ends_at: dt.datetime | None = None, capacity_request: CapacityRequest | None = None,
                      note: str = "") -> Allocation:
    """Give a tenant one GPU, MIG device or endpoint. The same GPU/MIG hardware is never held twice at once:
    the check runs under a lock on the GPU row, so two concurrent allocations of it serialize."""
    targets = [t for t in (gpu, mig_device, endpoint) if t is not None]
    if len(targets) != 1:
        raise ServiceError("Allocate exactly one of: a GPU, a MIG device, a serving endpoint.")
    tenant = _locked(tenant)
    if tenant.status != TenantStatus.APPROVED:
        raise ServiceError("Only an approved tenant can receive allocations.")
    if tenant.is_suspended:
        raise ServiceError("This tenant is suspended: no new allocations until it is unsuspended.")
    starts_at = starts_at or timezone.now()
    if ends_at is not None and ends_at <= starts_at:
        raise ServiceError("An allocation must end after it starts.", field="ends_at")
    if capacity_request is not None and capacity_request.tenant_id != tenant.pk:
        raise ServiceError("That capacity request belongs to another tenant.", field="capacity_request")

    existing = Allocation.objects.select_related("tenant", "gpu__node", "mig_device__gpu__node", "endpoint")
    if gpu is not None or mig_device is not None:
        gpu_row = gpu if gpu is not None else mig_device.gpu
        gpu_row = Gpu.objects.select_for_update().select_related("node__site").get(pk=gpu_row.pk)
        if gpu_row.node.site.partner_id != tenant.partner_id:
            raise ServiceError("This GPU belongs to another partner.")
        if gpu is not None:
            # A whole GPU conflicts with itself and with any of its MIG slices.
            clash = Q(gpu=gpu_row) | Q(mig_device__gpu=gpu_row)
        else:
            clash = Q(gpu=gpu_row) | Q(mig_device=mig_device)
        conflict = _overlapping(existing.filter(clash), starts_at, ends_at).first()
        if conflict is not None:
            raise ServiceError(_held_by(conflict))
    else:
        endpoint = ServingEndpoint.objects.select_for_update().select_related("site").get(pk=endpoint.pk)
        if endpoint.site.partner_id != tenant.partner_id:
            raise ServiceError("This endpoint belongs to another partner.")
        # Endpoints may be shared between tenants (attribution rules split them), but not held twice by one.
        if _overlapping(existing.filter(endpoint=endpoint, tenant=tenant), starts_at, ends_at).exists():
            raise ServiceError(f"Endpoint {endpoint} is already allocated to this tenant.")

    allocation = Allocation(tenant=tenant, gpu=gpu, mig_device=mig_device, endpoint=endpoint, starts_at=starts_at,
                            ends_at=ends_at, capacity_request=capacity_request, note=note,
                            created_by=by if by.pk else None)
    try:
        with transaction.atomic():
            allocation.save()
    except IntegrityError as exc:
        # The PostgreSQL exclusion constraint caught an overlap the lock did not (e.g. rows written outside
        # this service).
        raise ServiceError("This hardware is already allocated for an overlapping period.") from exc
    audit_record(actor=by, action=AuditAction.ALLOCATION_CREATED, obj=allocation,
                 summary=f"{allocation.target_label} allocated to {tenant.name} from {starts_at:%Y-%m-%d %H:%M} UTC",
                 data={"kind": allocation.kind, "target_id": allocation.target.pk})
    return allocation


@transaction.atomic
def allocation_end(*, allocation: Allocation, by: Actor, at: dt.datetime | None = None) -> Allocation:
    """End an allocation (history is kept). Ending an already ended one is refused, not silently repeated."""
    allocation = Allocation.objects.select_for_update().select_related("tenant").get(pk=allocation.pk)
    at = at or timezone.now()
    if allocation.ends_at is not None and allocation.ends_at <= at:
        raise ServiceError("This allocation has already ended.")
    if at <= allocation.starts_at:
        raise ServiceError("An allocation must end after it starts.")
    allocation.ends_at = at
    allocation.ended_by = by if by.pk else None
    allocation.save(update_fields=["ends_at", "ended_by", "updated_at"])
    audit_record(actor=by, action=AuditAction.ALLOCATION_ENDED, obj=allocation,
                 summary=f"{allocation.target_label} of {allocation.tenant.name} ended {at:%Y-%m-%d %H:%M} UTC")
    return allocation


# ---------------------------------------------------------------- attribution rules

def _rule_snapshot(rule: AttributionRule) -> dict:
    return {
        "endpoint": rule.endpoint_id, "label": rule.label, "value": rule.value, "tenant": rule.tenant_id,
        "effective_from": rule.effective_from.isoformat() if rule.effective_from else None,
        "effective_to": rule.effective_to.isoformat() if rule.effective_to else None,
    }


@transaction.atomic
def attribution_rule_save(*, rule: AttributionRule, by: Actor) -> AttributionRule:
    """Create or change a rule. Two rules for the same (endpoint, label, value) may not overlap in time."""
    if rule.effective_from is None:
        rule.effective_from = timezone.now()
    rule.label, rule.value = rule.label.strip(), rule.value.strip()
    try:
        rule.full_clean()
    except ValidationError as exc:
        raise ServiceError(" ".join(exc.messages)) from exc
    endpoint = ServingEndpoint.objects.select_for_update().select_related("site").get(pk=rule.endpoint_id)
    tenant = rule.tenant
    if endpoint.site.partner_id != tenant.partner_id:
        raise ServiceError("The endpoint and the tenant must belong to the same partner.", field="endpoint")
    if tenant.status != TenantStatus.APPROVED:
        raise ServiceError("Approve the tenant before attributing usage to it.", field="tenant")
    same = AttributionRule.objects.filter(endpoint=endpoint, label=rule.label, value=rule.value)
    if rule.pk:
        same = same.exclude(pk=rule.pk)
    same = same.filter(Q(effective_to__isnull=True) | Q(effective_to__gt=rule.effective_from))
    if rule.effective_to is not None:
        same = same.filter(effective_from__lt=rule.effective_to)
    conflict = same.select_related("tenant").first()
    if conflict is not None:
        raise ServiceError(
            f"{endpoint} {conflict.matcher} already goes to {conflict.tenant.name} from "
            f"{conflict.effective_from:%Y-%m-%d %H:%M} UTC; end that rule first."
        )
    before = _rule_snapshot(AttributionRule.objects.get(pk=rule.pk)) if rule.pk else None
    created = rule.pk is None
    rule.save()
    audit_record(
        actor=by, action=AuditAction.RULE_CREATED if created else AuditAction.RULE_CHANGED, obj=rule,
        summary=f"Rule {endpoint} {rule.matcher} → {tenant.name} " + ("created" if created else "changed"),
        data={"before": before, "after": _rule_snapshot(rule)},
    )
    return rule


@transaction.atomic
def attribution_rule_delete(*, rule: AttributionRule, by: Actor) -> None:
    audit_record(actor=by, action=AuditAction.RULE_DELETED, obj=rule,
                 summary=f"Rule {rule.endpoint} {rule.matcher} → {rule.tenant.name} deleted",
                 data={"before": _rule_snapshot(rule)})
    rule.delete()


# ---------------------------------------------------------------- API keys

@transaction.atomic
def api_key_create(*, tenant: Tenant, by: Actor, name: str, expires_at: dt.datetime | None = None) -> (
        tuple[ApiKey, str]):
    """A new key; the plaintext is returned once and only its hash is stored."""
    name = name.strip()
    if not name:
        raise ServiceError("Give the key a name, e.g. the service that will use it.", field="name")
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError("The expiry must be in the future.", field="expires_at")
    raw = new_token(API_KEY_PREFIX)
    key = ApiKey.objects.create(tenant=tenant, name=name, prefix=raw[:API_KEY_PREFIX_LEN], key_hash=hash_token(raw),
                                expires_at=expires_at, created_by=by if by.pk else None)
    audit_record(actor=by, action=AuditAction.API_KEY_CREATED, obj=key,
                 summary=f"API key {key.name} ({key.prefix}…) created")
    return key, raw


@transaction.atomic
def api_key_revoke(*, key: ApiKey, by: Actor) -> ApiKey:
    """Revoke a key; revoking a revoked key changes nothing (idempotent)."""
    updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db()
    if updated:
        audit_record(actor=by, action=AuditAction.API_KEY_REVOKED, obj=key,
                     summary=f"API key {key.name} ({key.prefix}…) revoked")
    return key


def api_key_authenticate(*, raw: str) -> ApiKey | None:
    """The usable key for a presented secret, or None. Records last use at most once a minute."""
    if not raw.startswith(f"{API_KEY_PREFIX}_"):
        return None
    key = ApiKey.objects.select_related("tenant").filter(key_hash=hash_token(raw)).first()
    now = timezone.now()
    if key is None or not key.is_usable(now):
        return None
    if key.last_used_at is None or now - key.last_used_at >= API_KEY_TOUCH_EVERY:
        # Conditional update: concurrent requests do one write between them, not one each.
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - API_KEY_TOUCH_EVERY)
        ).update(last_used_at=now)
        key.last_used_at = now
    return key


# ---------------------------------------------------------------- members and invitations

def invitation_token(*, invitation: TenantInvitation) -> str:
    return tokens.make_token({"i": invitation.pk, "e": invitation.email}, salt=tokens.INVITATION_SALT)


@transaction.atomic
def member_invite(*, tenant: Tenant, by: Actor, email: str, role: str, accept_url_for) -> TenantInvitation:
    """Invite a person by email; `accept_url_for(token)` builds the absolute link the email carries."""
    email = email.strip().lower()
    if role not in TenantRole.values:
        raise ServiceError("Choose admin or member.", field="role")
    if TenantMembership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise ServiceError("This person is already a member.", field="email")
    invitation = TenantInvitation.objects.create(tenant=tenant, email=email, role=role,
                                                 invited_by=by if by.pk else None)
    url = accept_url_for(invitation_token(invitation=invitation))
    body = (
        f"{by.get_username()} invites you to join {tenant.name} on Factory Portal as {role}.\n\n"
        f"Accept within {tokens.INVITATION_MAX_AGE_S // 86400} days: {url}\n"
    )
    transaction.on_commit(lambda: send_mail(f"Join {tenant.name} on Factory Portal", body, None, [email]))
    audit_record(actor=by, action=AuditAction.MEMBER_INVITED, obj=invitation, summary=f"{email} invited as {role}")
    return invitation


def invitation_from_token(*, token: str) -> TenantInvitation:
    try:
        payload = tokens.read_token(token, salt=tokens.INVITATION_SALT, max_age_s=tokens.INVITATION_MAX_AGE_S)
    except tokens.BadToken as exc:
        raise ServiceError(str(exc)) from exc
    invitation = TenantInvitation.objects.select_related("tenant").filter(pk=payload.get("i")).first()
    if invitation is None or invitation.email != payload.get("e") or invitation.revoked_at is not None:
        raise ServiceError("This invitation is not valid any more. Ask for a new one.")
    if invitation.accepted_at is not None:
        raise ServiceError("This invitation was already used. Log in instead.")
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user: AbstractBaseUser | None = None, password: str = "",
                      full_name: str = "") -> TenantMembership:
    """Join the tenant: as the logged-in `user` (whose email must match), or as a new account with `password`."""
    invitation = invitation_from_token(token=token)
    invitation = TenantInvitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at is not None:
        raise ServiceError("This invitation was already used. Log in instead.")
    if user is None:
        user = user_create(email=invitation.email, password=password, full_name=full_name)
    elif user.email.lower() != invitation.email:
        raise ServiceError("This invitation was sent to another email address.")
    if TenantMembership.objects.filter(user=user).exists():
        raise ServiceError("This account already belongs to an organization.")
    from sites.models import Membership

    if Membership.objects.filter(user=user).exists():
        raise ServiceError("Partner staff accounts cannot join a tenant; use another email address.")
    membership = TenantMembership.objects.create(user=user, tenant=invitation.tenant, role=invitation.role)
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at", "updated_at"])
    audit_record(actor=user, action=AuditAction.MEMBER_JOINED, obj=membership,
                 summary=f"{user.email} joined as {invitation.role}")
    return membership


@transaction.atomic
def member_remove(*, membership: TenantMembership, by: Actor) -> None:
    if membership.user_id == by.pk:
        raise ServiceError("You cannot remove yourself; ask another admin.")
    if membership.is_admin and not membership.tenant.memberships.filter(role=TenantRole.ADMIN).exclude(
            pk=membership.pk).exists():
        raise ServiceError("A tenant keeps at least one admin.")
    audit_record(actor=by, action=AuditAction.MEMBER_REMOVED, obj=membership, tenant=membership.tenant,
                 summary=f"{membership.user.email} removed")
    membership.delete()


# ---------------------------------------------------------------- price plans

@transaction.atomic
def price_plan_save(*, plan: PricePlan, by: Actor, rates: list[dict] | None = None) -> PricePlan:
    """Create or change a plan; `rates` (model, input_price_per_mtok, output_price_per_mtok) replaces its rates."""
    try:
        plan.full_clean()
    except ValidationError as exc:
        raise ServiceError(" ".join(exc.messages)) from exc
    created = plan.pk is None
    plan.save()
    if rates is not None:
        models_seen: set[str] = set()
        for rate in rates:
            if rate["model"] in models_seen:
                raise ServiceError(f"The model {rate['model']} is priced twice.")
            models_seen.add(rate["model"])
        plan.rates.all().delete()
        for rate in rates:
            row = PriceRate(plan=plan, model=rate["model"].strip(), input_price_per_mtok=rate["input_price_per_mtok"],
                            output_price_per_mtok=rate["output_price_per_mtok"])
            try:
                row.full_clean()
            except ValidationError as exc:
                raise ServiceError(" ".join(exc.messages)) from exc
            row.save()
            _price_tiers_save(rate=row, tiers=rate.get("tiers") or [])
    audit_record(
        actor=by, action=AuditAction.PRICE_PLAN_CREATED if created else AuditAction.PRICE_PLAN_CHANGED, obj=plan,
        partner=plan.partner, summary=f"Price plan {plan.name} " + ("created" if created else "changed"),
        data={"rates": [{"model": r.model, "input_price_per_mtok": str(r.input_price_per_mtok),
                         "output_price_per_mtok": str(r.output_price_per_mtok),
                         "tiers": [[t.threshold_tokens, str(t.input_price_per_mtok), str(t.output_price_per_mtok)]
                                   for t in r.tiers.all()]} for r in plan.rates.all()]},
    )
    return plan


def _price_tiers_save(*, rate: PriceRate, tiers: list[dict]) -> None:
    """Volume tiers of a rate (issue 6): each threshold once, prices ≥ 0."""
    thresholds = [t["threshold_tokens"] for t in tiers]
    if len(set(thresholds)) != len(thresholds):
        raise ServiceError(f"{rate.model}: two tiers start at the same number of tokens.")
    for tier in tiers:
        row = PriceTier(rate=rate, threshold_tokens=tier["threshold_tokens"],
                        input_price_per_mtok=tier["input_price_per_mtok"],
                        output_price_per_mtok=tier["output_price_per_mtok"])
        try:
            row.full_clean()
        except ValidationError as exc:
            raise ServiceError(f"{rate.model}: " + " ".join(exc.messages)) from exc
        row.save()
