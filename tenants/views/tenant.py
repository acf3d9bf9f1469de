"""The tenant's own pages. Every object comes from the person's own tenant; another tenant's id is a 404."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from factory_portal.exceptions import ServiceError
from tenants import selectors, services
from tenants.choices import TenantStatus
from tenants.forms import ApiKeyForm, CapacityRequestForm, InviteForm
from tenants.models import TenantMembership
from tenants.ratelimit import rate_limited
from tenants.views.common import require_tenant_admin, tenant_member_required


@tenant_member_required
def tenant_home(request: HttpRequest, m: TenantMembership) -> HttpResponse:
    tenant = m.tenant
    now = timezone.now()
    requests_ = selectors.capacity_requests_of(tenant=tenant)
    allocations = [a for a in selectors.allocation_list(user=request.user, tenant=tenant) if a.is_active(now)]
    return render(request, "tenants/tenant_home.html", {
        "m": m, "tenant": tenant, "requests": requests_, "allocations": allocations, "statuses": TenantStatus,
        "plan": tenant.price_plan, "rates": tenant.price_plan.rates.all() if tenant.price_plan else [],
        "spend": _month_spend(tenant, now),
    })


def _month_spend(tenant, now) -> dict | None:
    """This UTC month's attributed tokens and what they cost the tenant (never the partner's cost or margin)."""
    from tenants.economics_selectors import tenant_economics

    start = now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if now <= start:
        return None
    return tenant_economics(tenant=tenant, start=start, end=now, with_cost=False)


@require_POST
@tenant_member_required
@rate_limited("token")
def resend_confirmation(request: HttpRequest, m: TenantMembership) -> HttpResponse:
    require_tenant_admin(m)
    if m.tenant.email_confirmed:
        messages.info(request, "Your email address is already confirmed.")
    else:
        token = services.email_confirmation_token(tenant=m.tenant)
        services.tenant_send_confirmation(
            tenant=m.tenant, confirm_url=request.build_absolute_uri(reverse("tenants:confirm_email", args=[token]))
        )
        messages.success(request, f"We sent a new confirmation link to {m.tenant.contact_email}.")
    return redirect("tenants:tenant_home")


@require_http_methods(["GET", "POST"])
@tenant_member_required
def capacity_request_create(request: HttpRequest, m: TenantMembership) -> HttpResponse:
    require_tenant_admin(m)
    form = CapacityRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            services.capacity_request_create(
                tenant=m.tenant, by=request.user, models_requested=d["models_text"], gpu_count=d["gpu_count"],
                mig_profile=d["mig_profile"], mig_count=d["mig_count"], start_date=d["start_date"],
                expected_tokens_per_month=d["expected_tokens_per_month"], notes=d["notes"],
            )
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, "Request filed. The partner reviews it and will tell you here.")
            return redirect("tenants:tenant_home")
    return render(request, "tenants/form.html", {
        "form": form, "title": "Ask for capacity", "back": reverse("tenants:tenant_home"),
        "blocked": "" if m.tenant.email_confirmed else "Confirm your email address first (see the link we sent).",
    })


@tenant_member_required
def tenant_allocations(request: HttpRequest, m: TenantMembership) -> HttpResponse:
    allocations = selectors.allocation_list(user=request.user, tenant=m.tenant)
    return render(request, "tenants/tenant_allocations.html", {"m": m, "tenant": m.tenant,
                                                               "allocations": allocations, "now": timezone.now()})


@tenant_member_required
def tenant_usage(request: HttpRequest, m: TenantMembership) -> HttpResponse:
    since = timezone.localdate().replace(day=1)
    usage = selectors.tenant_usage_by_model_and_day(tenant=m.tenant, since=since)
    allocations = selectors.allocation_list(user=request.user, tenant=m.tenant)
    return render(request, "tenants/tenant_usage.html", {"m": m, "tenant": m.tenant, "usage": usage,
                                                         "since": since, "allocations": allocations,
                                                         "now": timezone.now()})


@require_http_methods(["GET", "POST"])
@tenant_member_required
def tenant_members(request: HttpRequest, m: TenantMembership) -> HttpResponse:
    form = InviteForm(request.POST or None)
    if request.method == "POST":
        require_tenant_admin(m)
        if form.is_valid():
            try:
                services.member_invite(
                    tenant=m.tenant, by=request.user, email=form.cleaned_data["email"], role=form.cleaned_data["role"],
                    accept_url_for=lambda t: request.build_absolute_uri(reverse("tenants:invite_accept", args=[t])),
                )
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
                return redirect("tenants:tenant_members")
    return render(request, "tenants/tenant_members.html", {
        "m": m, "tenant": m.tenant, "members": selectors.member_list(tenant=m.tenant),
        "invitations": selectors.open_invitations(tenant=m.tenant), "form": form,
    })


@require_POST
@tenant_member_required
def member_remove(request: HttpRequest, m: TenantMembership, pk: int) -> HttpResponse:
    require_tenant_admin(m)
    target = get_object_or_404(TenantMembership.objects.filter(tenant=m.tenant), pk=pk)
    try:
        services.member_remove(membership=target, by=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{target.user.email} removed.")
    return redirect("tenants:tenant_members")


@require_http_methods(["GET", "POST"])
@tenant_member_required
def api_keys(request: HttpRequest, m: TenantMembership) -> HttpResponse:
    form = ApiKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST":
        require_tenant_admin(m)
        if form.is_valid():
            try:
                key, new_key = services.api_key_create(tenant=m.tenant, by=request.user,
                                                       name=form.cleaned_data["name"], expires_at=form.expires_at())
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                form = ApiKeyForm()
    response = render(request, "tenants/api_keys.html", {
        "m": m, "tenant": m.tenant, "keys": selectors.api_key_list(user=request.user), "form": form,
        "new_key": new_key, "now": timezone.now(),
    })
    if new_key:
        response["Cache-Control"] = "no-store"  # the page holds a secret shown once
    return response


@require_POST
@tenant_member_required
def api_key_revoke(request: HttpRequest, m: TenantMembership, pk: int) -> HttpResponse:
    require_tenant_admin(m)
    key = get_object_or_404(selectors.api_key_list(user=request.user).filter(tenant=m.tenant), pk=pk)
    services.api_key_revoke(key=key, by=request.user)
    messages.success(request, f"API key {key.name} revoked.")
    return redirect("tenants:api_keys")


@tenant_member_required
def tenant_audit(request: HttpRequest, m: TenantMembership) -> HttpResponse:
    require_tenant_admin(m)
    events = selectors.audit_list(user=request.user, tenant=m.tenant)[:500]
    return render(request, "tenants/audit.html", {"events": events, "title": f"Audit log — {m.tenant.name}",
                                                  "tenant_side": True})
