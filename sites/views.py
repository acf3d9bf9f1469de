"""Partner pages for sites and their inventory. Thin: selectors read, services write."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from sites import selectors, services
from sites.forms import EndpointForm, GpuForm, NodeForm, SiteForm
from sites.models import Gpu, Node, ServingEndpoint, Site


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
    context = {
        "site": site,
        "nodes": selectors.node_list(user=request.user, site=site),
        "gpus": selectors.gpu_list(user=request.user, site=site),
        "endpoints": selectors.endpoint_list(user=request.user, site=site),
        "can_write": selectors.user_can_write_partner(user=request.user, partner_id=site.partner_id),
    }
    return render(request, "sites/site_detail.html", context)


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
