from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from tenants import selectors
from tenants.models import TenantMembership


def partner_staff_required(view: Callable) -> Callable:
    """Partner pages: 403 for anyone who is no partner's staff (tenant people included), before any lookup —
    so the answer never depends on whether an object exists."""

    @login_required
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not selectors.is_partner_staff(user=request.user):
            raise PermissionDenied("These pages are for partner staff.")
        return view(request, *args, **kwargs)

    return wrapped


def tenant_member_required(view: Callable) -> Callable:
    """Tenant pages: the view gets the person's membership; 403 for people of no tenant."""

    @login_required
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        membership = selectors.tenant_membership_of(user=request.user)
        if membership is None:
            raise PermissionDenied("These pages are for members of a tenant organization.")
        return view(request, membership, *args, **kwargs)

    return wrapped


def require_tenant_admin(membership: TenantMembership) -> None:
    if not membership.is_admin:
        raise PermissionDenied("Only your organization's admins can do this.")
