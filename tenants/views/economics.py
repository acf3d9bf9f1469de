"""Economics pages: site economics (figures, costs, what-if), portfolio, invoices (partner and tenant).

Partner staff only for cost and margin (403 for tenant people before any lookup); invoices are shared pages
scoped by `Invoice.objects.visible_to` (another tenant's or partner's invoice is a 404).
"""

from __future__ import annotations

import datetime as dt
import functools

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from factory_portal.exceptions import ServiceError
from factory_portal.timerange import CHOICES, parse_time_range
from sites.models import Site
from tenants import charts, invoicing, selectors
from tenants import economics_selectors as es
from tenants.choices import InvoiceStatus
from tenants.economics import DEFINITIONS
from tenants.models import Tenant, TenantMembership
from tenants.views.common import partner_staff_required, tenant_member_required

REFRESH_S = 15


def _range(request: HttpRequest, time_zone: str):
    params = request.GET.copy()
    params.setdefault("range", "30d")
    error = ""
    try:
        return parse_time_range(params, time_zone=time_zone), error
    except ServiceError as exc:
        return parse_time_range({"range": "30d"}), exc.message


def _staff_site(request: HttpRequest, slug: str) -> Site:
    return get_object_or_404(Site.objects.visible_to(request.user), slug=slug)


def _json_staff(view):
    """JSON for the page's script: 401 without login, 403 for people who are no partner's staff."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"detail": "Log in to see this."}, status=401)
        if not selectors.is_partner_staff(user=request.user):
            return JsonResponse({"detail": "These figures are for partner staff."}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


def _site_figures(site: Site, time_range) -> tuple[dict | None, dict | None, str]:
    try:
        figures = es.site_economics(site=site, start=time_range.start, end=time_range.end)
    except ServiceError as exc:
        return None, None, exc.message
    return figures, es.site_whatif(site=site, start=time_range.start, end=time_range.end, figures=figures), ""


def _fmt(value, places: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:,.{places}f}"


def _fields(site: Site, f: dict) -> dict[str, str]:
    return {
        "revenue": _fmt(f["revenue"]), "cost": _fmt(f["cost"]), "margin": _fmt(f["margin"]),
        "margin_pct": _fmt(f["margin_pct"], 1), "cost_per_mtok": _fmt(f["cost_per_mtok"], 4),
        "revenue_per_mtok": _fmt(f["revenue_per_mtok"], 4), "energy_kwh": _fmt(f["energy_kwh"], 3),
        "facility_energy_kwh": _fmt(f["facility_energy_kwh"], 3), "energy_cost": _fmt(f["energy_cost"]),
        "capex_amortization": _fmt(f["capex_amortization"]), "opex": _fmt(f["opex"]),
        "tokens": f"{f['tokens']:,}", "input_tokens": f"{f['input_tokens']:,}",
        "output_tokens": f"{f['output_tokens']:,}", "tokens_per_kwh": _fmt(f["tokens_per_kwh"], 0),
        "gpu_utilization_pct": _fmt(f["gpu_utilization_pct"], 1), "allocation_ratio": _fmt(
            f["allocation_ratio"] * 100 if f["allocation_ratio"] is not None else None, 1),
        "gpu_hours": _fmt(f["gpu_hours"], 1),
        "energy_estimated": "estimated" if f["energy_estimated"] else "measured",
    }


@partner_staff_required
def site_economics(request: HttpRequest, slug: str) -> HttpResponse:
    site = _staff_site(request, slug)
    time_range, range_error = _range(request, site.time_zone)
    figures, whatif, error = _site_figures(site, time_range)
    return render(request, "tenants/economics_site.html", {
        "site": site, "figures": figures, "whatif": whatif, "error": error,
        "fields": _fields(site, figures) if figures else {}, "definitions": DEFINITIONS,
        "time_range": time_range, "range_choices": CHOICES, "range_error": range_error,
        "time_zone": site.time_zone, "refresh_s": REFRESH_S, "updated_at": timezone.now(),
    })


@_json_staff
def site_economics_data(request: HttpRequest, slug: str) -> HttpResponse:
    site = _staff_site(request, slug)
    time_range, _ = _range(request, site.time_zone)
    figures, _, error = _site_figures(site, time_range)
    if error:
        return JsonResponse({"detail": error}, status=400)
    return JsonResponse({"fields": _fields(site, figures), "stale": [], "alerts": [],
                         "updated_at": timezone.now().isoformat(), "refresh_s": REFRESH_S})


@_json_staff
def site_economics_chart(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    site = _staff_site(request, slug)
    time_range, range_error = _range(request, site.time_zone)
    if range_error:
        return JsonResponse({"detail": range_error}, status=400)
    if name not in ("whatif", "costs"):
        return JsonResponse({"detail": "No such chart."}, status=404)
    figures, whatif, error = _site_figures(site, time_range)
    if error:
        return JsonResponse({"detail": error}, status=400)
    figure = (charts.whatif_figure(whatif=whatif, currency=site.currency) if name == "whatif"
              else charts.cost_figure(figures=figures))
    return JsonResponse({**figure, "updated_at": timezone.now().isoformat(), "range": time_range.as_json()})


@partner_staff_required
def portfolio(request: HttpRequest) -> HttpResponse:
    time_range, range_error = _range(request, "UTC")
    try:
        data = es.portfolio(user=request.user, start=time_range.start, end=time_range.end)
        error = ""
    except ServiceError as exc:
        data, error = None, exc.message
    return render(request, "tenants/economics_portfolio.html", {
        "data": data, "error": error, "definitions": DEFINITIONS, "time_range": time_range,
        "range_choices": CHOICES, "range_error": range_error, "time_zone": "UTC",
    })


# ---------------------------------------------------------------- invoices

@partner_staff_required
def partner_invoice_list(request: HttpRequest) -> HttpResponse:
    """Invoices of the partner's tenants; POST generates (or refreshes) a month's draft for a tenant."""
    if request.method == "POST":
        if not selectors.partner_writable_ids(user=request.user):
            raise PermissionDenied("Your role at this partner is read-only.")
        tenant = Tenant.objects.writable_by(request.user).filter(pk=request.POST.get("tenant") or 0).first() \
            if (request.POST.get("tenant") or "").isdigit() else None
        try:
            month = dt.date.fromisoformat((request.POST.get("month") or "") + "-01")
            if tenant is None:
                raise ServiceError("Choose one of your tenants.")
            if not 2000 <= month.year <= 2100:
                raise ServiceError("Choose a month between 2000 and 2100.")
            invoice = invoicing.invoice_generate(tenant=tenant, period_start=month)
        except ValueError:
            messages.error(request, "Give the month as YYYY-MM.")
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{invoice.label} for {tenant.name}: {invoice.total} {invoice.currency}.")
            return redirect("tenants:invoice_detail", pk=invoice.pk)
        return redirect("tenants:partner_invoice_list")
    invoices = selectors.invoice_list(user=request.user).filter(tenant__in=Tenant.objects.of_partner_staff(
        request.user))[:500]
    return render(request, "tenants/invoice_list.html", {
        "invoices": invoices, "partner_side": True, "statuses": InvoiceStatus,
        "tenants": Tenant.objects.writable_by(request.user).filter(price_plan__isnull=False),
        "can_write": bool(selectors.partner_writable_ids(user=request.user)),
    })


@tenant_member_required
def tenant_invoice_list(request: HttpRequest, m: TenantMembership) -> HttpResponse:
    invoices = selectors.invoice_list(user=request.user).filter(tenant=m.tenant)
    return render(request, "tenants/invoice_list.html", {"invoices": invoices, "partner_side": False, "m": m,
                                                         "tenant": m.tenant, "statuses": InvoiceStatus})


@login_required
def invoice_detail(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = _visible_invoice(request, pk)
    partner_side = Tenant.objects.of_partner_staff(request.user).filter(pk=invoice.tenant_id).exists()
    return render(request, "tenants/invoice_detail.html", {
        "invoice": invoice, "lines": invoice.lines.all(), "partner_side": partner_side,
        "can_write": partner_side and invoice.partner_id in selectors.partner_writable_ids(user=request.user),
    })


def _visible_invoice(request: HttpRequest, pk: int):
    return selectors.invoice_get(user=request.user, pk=pk)


@login_required
def invoice_csv(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = _visible_invoice(request, pk)
    response = HttpResponse(invoicing.invoice_csv(invoice=invoice), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{invoice.label.replace(" ", "-")}.csv"'
    return response


@require_POST
@partner_staff_required
def invoice_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    invoice = get_object_or_404(selectors.invoice_list(user=request.user).filter(
        tenant__in=Tenant.objects.of_partner_staff(request.user)), pk=pk)
    if invoice.partner_id not in selectors.partner_writable_ids(user=request.user):
        raise PermissionDenied("Your role at this partner is read-only.")
    actions = {"issue": lambda: invoicing.invoice_issue(invoice=invoice, by=request.user),
               "pay": lambda: invoicing.invoice_mark_paid(invoice=invoice, by=request.user),
               "void": lambda: invoicing.invoice_void(invoice=invoice, by=request.user,
                                                      reason=request.POST.get("reason", "")[:300])}
    if action not in actions:
        from django.http import Http404

        raise Http404("No such action.")
    try:
        invoice = actions[action]()
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{invoice.label}: {invoice.get_status_display().lower()}.")
    return redirect("tenants:invoice_detail", pk=invoice.pk)
