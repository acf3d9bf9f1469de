from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from sites import selectors


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The partner home: the user's sites with their inventory, and what to do next when there are none."""
    sites = selectors.site_list(user=request.user)
    can_create = selectors.partners_writable_by(user=request.user).exists()
    return render(request, "home.html", {"sites": sites, "can_create": can_create})
