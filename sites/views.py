"""Partner pages for sites and their inventory. Thin: selectors read, services write."""

from __future__ import annotations

import functools

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from factory_portal.exceptions import ServiceError
from factory_portal.timerange import CHOICES as RANGE_CHOICES
from factory_portal.timerange import DEFAULT_RANGE, TimeRange, parse_time_range
from sites import buildout, charts, dashboard, selectors, services
from sites.forms import EndpointForm, GpuForm, MilestoneForm, NodeForm, SiteForm
from sites.models import Gpu, Node, ServingEndpoint, Site, SiteMilestone

GPU_TABLE_ROWS = 64


def _writable_site(request: HttpRequest, slug: str) -> Site:
    site = selectors.site_get(user=request.user, slug=slug)  # 404 for other partners' sites
    if not selectors.user_can_write_partner(user=request.user, partner_id=site.partner_id):
        raise PermissionDenied("Your role at this partner is read-only.")
    return site


@login_required
def site_list(request: HttpRequest) -> HttpResponse:
    sites = selectors.site_list(user=request.user)
    can_create = selectors.partners_writable_by(user=request.user).exists()
    return render(request, "sites/site_list.html", {"sites": sites, "can_create": can_create})


@login_required
def site_create(request: HttpRequest) -> HttpResponse:
    partners = selectors.partners_writable_by(user=request.user)
    if not partners.exists():
        raise PermissionDenied("Only partner owners and operators can register sites.")
    form = SiteForm(request.POST or None, partners=partners)
    if request.method == "POST" and form.is_valid():
        site = services.site_save(site=form.save(commit=False))
        messages.success(request, f"Site {site.name} registered.")
        return redirect("sites:site_detail", slug=site.slug)
    return render(request, "sites/site_form.html", {"form": form, "title": "Register a site"})


@login_required
def site_detail(request: HttpRequest, slug: str) -> HttpResponse:
    site = selectors.site_get(user=request.user, slug=slug)
    now = timezone.now()
    card = dashboard.site_cards(user=request.user, site=site, now=now)[0]
    context = {
        "site": site,
        # Only whether there are any: the node table's rows (with GPU counts) come from the page providers.
        "nodes": Node.objects.visible_to(request.user).filter(site=site).exists(),
        # A big site lists its first GPUs only: the heatmap is the overview of all of them.
        "gpus": selectors.gpu_table(user=request.user, site=site)[:GPU_TABLE_ROWS],
        "gpus_total": card.gpus_total,
        "endpoints": selectors.endpoint_list(user=request.user, site=site),
        "can_write": selectors.user_can_write_partner(user=request.user, partner_id=site.partner_id),
        "card": card,
        "updated_at": now,
        **dashboard_context(request, time_zone=site.time_zone, now=now),
        "all_nodes": _all_nodes(request),
        **dashboard.site_page_context(user=request.user, site=site, now=now, all_nodes=_all_nodes(request),
                                      node_states=card.node_states, card=card),
    }
    return render(request, "sites/site_detail.html", context)


def _all_nodes(request: HttpRequest) -> bool:
    """The site page's "show all nodes" (`?nodes=all`), also passed to its live JSON."""
    return request.GET.get("nodes") == "all"


def dashboard_context(request: HttpRequest, *, time_zone: str, now) -> dict:
    """Range selector, refresh interval and definitions shared by the overview and the site page.

    A malformed range is shown as an error above the charts and the default range is used instead.
    """
    try:
        time_range, range_error = parse_time_range(request.GET, time_zone=time_zone, now=now), ""
    except ServiceError as e:
        time_range, range_error = parse_time_range({"range": DEFAULT_RANGE}, now=now), e.message
    return {
        "time_range": time_range, "range_error": range_error, "range_choices": RANGE_CHOICES,
        "refresh_s": dashboard_refresh_s(), "definitions": dashboard.DEFINITIONS, "time_zone": time_zone,
    }


@login_required
def site_edit(request: HttpRequest, slug: str) -> HttpResponse:
    site = _writable_site(request, slug)
    form = SiteForm(request.POST or None, instance=site, partners=selectors.partners_writable_by(user=request.user))
    if request.method == "POST" and form.is_valid():
        services.site_save(site=form.save(commit=False))
        messages.success(request, "Site saved.")
        return redirect("sites:site_detail", slug=site.slug)
    return render(request, "sites/site_form.html", {"form": form, "site": site, "title": f"Edit {site.name}"})


@login_required
def node_form(request: HttpRequest, slug: str, pk: int | None = None) -> HttpResponse:
    site = _writable_site(request, slug)
    node = get_object_or_404(Node, site=site, pk=pk) if pk else Node(site=site)
    form = NodeForm(request.POST or None, instance=node)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Node {node.hostname} saved.")
        return redirect("sites:site_detail", slug=site.slug)
    title = f"Edit node {node.hostname}" if pk else "Add a node"
    return render(request, "sites/site_form.html", {"form": form, "site": site, "title": title})


@login_required
def gpu_form(request: HttpRequest, slug: str, pk: int | None = None) -> HttpResponse:
    site = _writable_site(request, slug)
    gpu = get_object_or_404(Gpu, node__site=site, pk=pk) if pk else Gpu()
    form = GpuForm(request.POST or None, instance=gpu, site=site)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "GPU saved.")
        return redirect("sites:site_detail", slug=site.slug)
    title = f"Edit GPU {gpu}" if pk else "Add a GPU"
    return render(request, "sites/site_form.html", {"form": form, "site": site, "title": title})


@login_required
def endpoint_form(request: HttpRequest, slug: str, pk: int | None = None) -> HttpResponse:
    site = _writable_site(request, slug)
    endpoint = get_object_or_404(ServingEndpoint, site=site, pk=pk) if pk else ServingEndpoint(site=site)
    form = EndpointForm(request.POST or None, instance=endpoint, site=site)
    if request.method == "POST" and form.is_valid():
        services.endpoint_save(
            endpoint=form.save(commit=False),
            bearer_token=form.cleaned_data["bearer_token"] or None,
            clear_token=form.cleaned_data["clear_bearer_token"],
        )
        messages.success(request, f"Endpoint {endpoint.name} saved.")
        return redirect("sites:site_detail", slug=site.slug)
    title = f"Edit endpoint {endpoint.name}" if pk else "Register a serving endpoint"
    return render(request, "sites/site_form.html", {"form": form, "site": site, "title": title})


# Dashboards: the site page's live cards and charts, the overview's JSON, and the build-out plan.

def dashboard_refresh_s() -> int:
    """Seconds between live refreshes (at most 15 s, issue 7); tests shorten it through settings."""
    return max(1, min(int(getattr(settings, "DASHBOARD_REFRESH_S", 15)), 15))


def _json_login_required(view):
    """Like login_required, but answers a fetch() with 401 JSON instead of a redirect to an HTML page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"detail": "Log in to see this."}, status=401)
        return view(request, *args, **kwargs)

    return wrapper


def _time_range(request: HttpRequest, time_zone: str = "UTC") -> TimeRange:
    return parse_time_range(request.GET, time_zone=time_zone)


def _chart_response(registry: dict, name: str, *, user, sites: list[Site], time_range: TimeRange,
                    now, site: Site | None = None) -> HttpResponse:
    builder = registry.get(name)
    if builder is None:
        raise Http404("No such chart.")
    cards = [] if builder in charts.CARDLESS else dashboard.site_cards(user=user, site=site, now=now, live=False)
    figure = builder(charts.ChartContext(user=user, cards=cards, time_range=time_range, now=now, sites=sites))
    return JsonResponse({**figure, "updated_at": now.isoformat(), "range": time_range.as_json()})


@_json_login_required
def overview_data(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    cards = dashboard.site_cards(user=request.user, now=now)
    return JsonResponse(dashboard.live_payload(cards=cards, now=now, refresh_s=dashboard_refresh_s(), fleet=True))


@_json_login_required
def overview_chart(request: HttpRequest, name: str) -> HttpResponse:
    now = timezone.now()
    try:
        time_range = _time_range(request)
    except ServiceError as e:
        return JsonResponse({"detail": e.message}, status=400)
    sites = list(Site.objects.visible_to(request.user))
    return _chart_response(charts.OVERVIEW_CHARTS, name, user=request.user, sites=sites, time_range=time_range,
                           now=now)


@_json_login_required
def site_data(request: HttpRequest, slug: str) -> HttpResponse:
    site = selectors.site_get(user=request.user, slug=slug)
    now = timezone.now()
    cards = dashboard.site_cards(user=request.user, site=site, now=now)
    payload = dashboard.live_payload(cards=cards, now=now, refresh_s=dashboard_refresh_s(), fleet=False)
    card = cards[0]
    payload["fields"] |= {f"milestone-{r.pk}-state": r.state_label for r in card.buildout.rows}
    payload["fields"] |= {
        f"site-{site.pk}-compliance_ok": str(card.compliance.ok),
        f"site-{site.pk}-compliance_drift": str(card.compliance.drift),
        f"site-{site.pk}-compliance_unknown": str(card.compliance.unknown),
    }
    fields, stale = dashboard.site_live_fields(user=request.user, site=site, now=now, all_nodes=_all_nodes(request),
                                               node_states=card.node_states, card=card)
    payload["fields"] |= fields
    payload["stale"] += stale
    return JsonResponse(payload)


@_json_login_required
def site_chart(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    site = selectors.site_get(user=request.user, slug=slug)
    now = timezone.now()
    try:
        time_range = _time_range(request, site.time_zone)
    except ServiceError as e:
        return JsonResponse({"detail": e.message}, status=400)
    return _chart_response(charts.SITE_CHARTS, name, user=request.user, sites=[site], time_range=time_range,
                           now=now, site=site)


@login_required
def milestone_edit(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    site = _writable_site(request, slug)
    milestone = get_object_or_404(SiteMilestone.objects.select_related("site"), site=site, pk=pk)
    form = MilestoneForm(request.POST or None, instance=milestone)
    if request.method == "POST" and form.is_valid():
        try:
            buildout.milestone_update(milestone=milestone, **form.cleaned_data)
        except ServiceError as e:
            form.add_error(e.field, e.message)
        else:
            messages.success(request, f"Milestone {milestone.name} saved.")
            return redirect("sites:site_detail", slug=site.slug)
    title = f"Edit milestone {milestone.name}"
    return render(request, "sites/site_form.html", {"form": form, "site": site, "title": title})


@login_required
@require_POST
def milestone_plan_create(request: HttpRequest, slug: str) -> HttpResponse:
    site = _writable_site(request, slug)
    added = buildout.milestone_plan_create(site=site)
    messages.success(request, f"{added} milestone(s) added from the default 90-day plan." if added
                     else "The site already has every milestone of the default plan.")
    return redirect("sites:site_detail", slug=site.slug)
