"""Partner staff pages: tenants and their requests, decisions, allocations, attribution rules, price plans, audit.

Order of checks: no partner staff → 403; object of another partner → 404; a write the role lacks → 403.
"""

from __future__ import annotations

import csv

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from factory_portal.exceptions import ServiceError
from sites.models import ServingEndpoint
from tenants import selectors, services
from tenants.choices import RequestStatus, TenantStatus
from tenants.forms import (
    AllocationForm,
    AttributionRuleForm,
    DecisionForm,
    PricePlanAssignForm,
    PricePlanForm,
    PriceRateFormSet,
    ReasonForm,
)
from tenants.models import Allocation, AttributionRule, CapacityRequest, PricePlan, Tenant
from tenants.views.common import partner_staff_required


def _managed_tenant(request: HttpRequest, slug: str) -> Tenant:
    tenant = selectors.partner_tenant_get(user=request.user, slug=slug)  # 404 for other partners' tenants
    if not selectors.user_can_manage_tenant(user=request.user, tenant=tenant):
        raise PermissionDenied("Your role at this partner is read-only.")
    return tenant


def _writable_or_403(request: HttpRequest, partner_id: int) -> None:
    if not request.user.is_superuser and partner_id not in selectors.partner_writable_ids(user=request.user):
        raise PermissionDenied("Your role at this partner is read-only.")


def _form_error(form, exc: ServiceError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, exc.message)


@partner_staff_required
def tenant_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") if request.GET.get("status") in TenantStatus.values else None
    return render(request, "tenants/partner_tenant_list.html", {
        "tenants": selectors.partner_tenant_list(user=request.user, status=status),
        "pending_tenants": selectors.partner_tenant_list(user=request.user, status=TenantStatus.PENDING),
        "pending_requests": selectors.pending_capacity_requests(user=request.user),
        "counts": selectors.tenant_status_counts(user=request.user), "status": status,
        "signup_partners": selectors.partners_managed_by(user=request.user),
    })


@partner_staff_required
def tenant_detail(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = selectors.partner_tenant_get(user=request.user, slug=slug)
    can_write = selectors.user_can_manage_tenant(user=request.user, tenant=tenant)
    return render(request, "tenants/partner_tenant_detail.html", {
        "tenant": tenant, "can_write": can_write, "now": timezone.now(),
        "members": selectors.member_list(tenant=tenant),
        "requests": selectors.capacity_requests_of(tenant=tenant),
        "allocations": selectors.allocation_list(user=request.user, tenant=tenant),
        "rules": selectors.partner_rule_list(user=request.user).filter(tenant=tenant),
        "events": selectors.audit_list(user=request.user, tenant=tenant)[:50],
        "decision_form": DecisionForm(), "reason_form": ReasonForm(),
        "plan_form": PricePlanAssignForm(tenant=tenant), "statuses": TenantStatus,
        "pending": RequestStatus.PENDING,
    })


@require_POST
@partner_staff_required
def tenant_decide(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _managed_tenant(request, slug)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
        return redirect("tenants:partner_tenant_detail", slug=tenant.slug)
    try:
        if form.cleaned_data["decision"] == "approve":
            services.tenant_approve(tenant=tenant, by=request.user, reason=form.cleaned_data["reason"])
            messages.success(request, f"{tenant.name} approved.")
        else:
            services.tenant_reject(tenant=tenant, by=request.user, reason=form.cleaned_data["reason"])
            messages.success(request, f"{tenant.name} rejected.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("tenants:partner_tenant_detail", slug=tenant.slug)


@require_POST
@partner_staff_required
def tenant_suspension(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _managed_tenant(request, slug)
    form = ReasonForm(request.POST)
    form.is_valid()
    try:
        if request.POST.get("action") == "unsuspend":
            services.tenant_unsuspend(tenant=tenant, by=request.user)
            messages.success(request, f"{tenant.name} unsuspended.")
        else:
            services.tenant_suspend(tenant=tenant, by=request.user, reason=form.cleaned_data.get("reason", ""))
            messages.success(request, f"{tenant.name} suspended: no new allocations until unsuspended.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("tenants:partner_tenant_detail", slug=tenant.slug)


@require_POST
@partner_staff_required
def tenant_price_plan(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _managed_tenant(request, slug)
    form = PricePlanAssignForm(request.POST, tenant=tenant)
    if form.is_valid():
        try:
            services.tenant_assign_price_plan(tenant=tenant, plan=form.cleaned_data["price_plan"], by=request.user)
            messages.success(request, "Price plan saved.")
        except ServiceError as exc:
            messages.error(request, exc.message)
    else:
        messages.error(request, "Choose one of this partner's price plans.")
    return redirect("tenants:partner_tenant_detail", slug=tenant.slug)


@require_POST
@partner_staff_required
def request_decide(request: HttpRequest, pk: int) -> HttpResponse:
    capacity_request = get_object_or_404(CapacityRequest.objects.of_partner_staff(request.user)
                                         .select_related("tenant"), pk=pk)
    _writable_or_403(request, capacity_request.tenant.partner_id)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
    else:
        try:
            services.capacity_request_decide(request=capacity_request, by=request.user,
                                             approve=form.cleaned_data["decision"] == "approve",
                                             reason=form.cleaned_data["reason"])
            messages.success(request, "Decision saved.")
        except ServiceError as exc:
            messages.error(request, exc.message)
    return redirect("tenants:partner_tenant_detail", slug=capacity_request.tenant.slug)


@require_http_methods(["GET", "POST"])
@partner_staff_required
def allocation_create(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = _managed_tenant(request, slug)
    form = AllocationForm(
        request.POST or None, gpus=selectors.allocatable_gpus(tenant=tenant),
        mig_devices=selectors.allocatable_mig_devices(tenant=tenant),
        endpoints=selectors.allocatable_endpoints(tenant=tenant),
        requests=selectors.capacity_requests_of(tenant=tenant),
    )
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            services.allocation_create(
                tenant=tenant, by=request.user, gpu=d["gpu"], mig_device=d["mig_device"], endpoint=d["endpoint"],
                starts_at=d["starts_at"], ends_at=d["ends_at"], capacity_request=d["capacity_request"], note=d["note"],
            )
        except ServiceError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, "Allocated.")
            return redirect("tenants:partner_tenant_detail", slug=tenant.slug)
    return render(request, "tenants/form.html", {
        "form": form, "title": f"Allocate to {tenant.name}",
        "back": reverse("tenants:partner_tenant_detail", args=[tenant.slug]),
        "blocked": "This tenant is suspended: no new allocations." if tenant.is_suspended else
        ("" if tenant.status == TenantStatus.APPROVED else "Approve the tenant before allocating."),
    })


@require_POST
@partner_staff_required
def allocation_end(request: HttpRequest, pk: int) -> HttpResponse:
    allocation = get_object_or_404(Allocation.objects.of_partner_staff(request.user).select_related("tenant"), pk=pk)
    _writable_or_403(request, allocation.tenant.partner_id)
    try:
        services.allocation_end(allocation=allocation, by=request.user)
        messages.success(request, f"{allocation.target_label} released.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("tenants:partner_tenant_detail", slug=allocation.tenant.slug)


def allocations_csv(request: HttpRequest) -> HttpResponse:
    """Every allocation the user may see (partner staff: their partners'; tenant people: their own)."""
    if not request.user.is_authenticated:
        return redirect(f"{reverse('login')}?next={request.path}")
    rows = selectors.allocation_list(user=request.user).order_by("tenant__name", "starts_at", "pk")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="allocations.csv"'
    writer = csv.writer(response)
    writer.writerow(["tenant", "kind", "target", "uuid", "starts_at", "ends_at", "note"])
    for a in rows:
        uuid = a.gpu.uuid if a.gpu_id else a.mig_device.uuid if a.mig_device_id else ""
        writer.writerow([a.tenant.name, a.kind, a.target_label, uuid, a.starts_at.isoformat(),
                         a.ends_at.isoformat() if a.ends_at else "", a.note])
    return response


@partner_staff_required
def rule_list(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/rule_list.html", {
        "rules": selectors.partner_rule_list(user=request.user),
        "can_write": bool(selectors.partner_writable_ids(user=request.user)) or request.user.is_superuser,
        "writable": selectors.partner_writable_ids(user=request.user), "now": timezone.now(),
    })


def _rule_form(request: HttpRequest, rule: AttributionRule) -> HttpResponse:
    writable = selectors.partners_managed_by(user=request.user)
    form = AttributionRuleForm(
        request.POST or None, instance=rule,
        endpoints=ServingEndpoint.objects.filter(site__partner__in=writable).select_related("site"),
        tenants=Tenant.objects.filter(partner__in=writable),
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.attribution_rule_save(rule=form.save(commit=False), by=request.user)
        except ServiceError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, "Attribution rule saved.")
            return redirect("tenants:rule_list")
    title = "Edit attribution rule" if rule.pk else "New attribution rule"
    return render(request, "tenants/form.html", {"form": form, "title": title, "back": reverse("tenants:rule_list"),
                                                 "help": "rules"})


@require_http_methods(["GET", "POST"])
@partner_staff_required
def rule_create(request: HttpRequest) -> HttpResponse:
    if not selectors.partners_managed_by(user=request.user).exists():
        raise PermissionDenied("Your role at this partner is read-only.")
    return _rule_form(request, AttributionRule())


@require_http_methods(["GET", "POST"])
@partner_staff_required
def rule_edit(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(AttributionRule.objects.of_partner_staff(request.user).select_related("tenant"), pk=pk)
    _writable_or_403(request, rule.tenant.partner_id)
    return _rule_form(request, rule)


@require_POST
@partner_staff_required
def rule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(AttributionRule.objects.of_partner_staff(request.user).select_related("tenant"), pk=pk)
    _writable_or_403(request, rule.tenant.partner_id)
    services.attribution_rule_delete(rule=rule, by=request.user)
    messages.success(request, "Attribution rule deleted.")
    return redirect("tenants:rule_list")


@partner_staff_required
def price_plan_list(request: HttpRequest) -> HttpResponse:
    plans = selectors.partner_price_plan_list(user=request.user)
    return render(request, "tenants/price_plan_list.html", {
        "plans": plans, "writable": selectors.partner_writable_ids(user=request.user),
        "can_create": selectors.partners_managed_by(user=request.user).exists(),
    })


def _plan_form(request: HttpRequest, plan: PricePlan) -> HttpResponse:
    form = PricePlanForm(request.POST or None, instance=plan, partners=selectors.partners_managed_by(user=request.user))
    formset = PriceRateFormSet(request.POST or None, instance=plan, prefix="rates")
    if request.method == "POST" and form.is_valid() and formset.is_valid():
        rates = [f.cleaned_data for f in formset.forms
                 if f.cleaned_data and not f.cleaned_data.get("DELETE") and f.cleaned_data.get("model")]
        try:
            with transaction.atomic():
                plan = services.price_plan_save(plan=form.save(commit=False), by=request.user, rates=rates)
        except ServiceError as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Price plan {plan.name} saved.")
            return redirect("tenants:price_plan_list")
    title = f"Edit price plan {plan.name}" if plan.pk else "New price plan"
    return render(request, "tenants/price_plan_form.html", {"form": form, "formset": formset, "title": title})


@require_http_methods(["GET", "POST"])
@partner_staff_required
def price_plan_create(request: HttpRequest) -> HttpResponse:
    if not selectors.partners_managed_by(user=request.user).exists():
        raise PermissionDenied("Your role at this partner is read-only.")
    return _plan_form(request, PricePlan())


@require_http_methods(["GET", "POST"])
@partner_staff_required
def price_plan_edit(request: HttpRequest, pk: int) -> HttpResponse:
    plan = get_object_or_404(PricePlan.objects.of_partner_staff(request.user), pk=pk)
    _writable_or_403(request, plan.partner_id)
    return _plan_form(request, plan)


@partner_staff_required
def partner_audit(request: HttpRequest) -> HttpResponse:
    events = selectors.partner_audit_list(user=request.user)[:500]
    return render(request, "tenants/audit.html", {"events": events, "title": "Audit log"})
