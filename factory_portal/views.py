from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from sites import dashboard, selectors
from sites.views import dashboard_context
from tenants.selectors import is_partner_staff, tenant_membership_of


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The partner overview: a live card per site, fleet charts, alerts, and what to do next when there are none.

    A tenant's people have their own home (tenants app); partner staff stay here.
    """
    if not is_partner_staff(user=request.user) and tenant_membership_of(user=request.user) is not None:
        return redirect("tenants:tenant_home")
    now = timezone.now()
    cards = dashboard.site_cards(user=request.user, now=now)
    alerts = sorted((a for card in cards for a in card.alerts), key=lambda a: a.level != "bad")
    context = {
        "cards": cards,
        "fleet": dashboard.fleet_totals(cards=cards),
        "alerts": alerts,
        "can_create": selectors.partners_writable_by(user=request.user).exists(),
        "updated_at": now,
        **dashboard_context(request, time_zone="UTC", now=now),
    }
    return render(request, "home.html", context)
