from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from sites import selectors


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The partner home: the user's sites with their inventory, and what to do next when there are none.

    A tenant's people have their own home (tenants app); partner staff stay here.
    """
    from tenants.selectors import is_partner_staff, tenant_membership_of

    if not is_partner_staff(user=request.user) and tenant_membership_of(user=request.user) is not None:
        return redirect("tenants:tenant_home")
    sites = selectors.site_list(user=request.user)
    can_create = selectors.partners_writable_by(user=request.user).exists()
    return render(request, "home.html", {"sites": sites, "can_create": can_create})
