"""Public pages: signup, email confirmation, invitation acceptance. Rate-limited per client address."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from factory_portal.exceptions import ServiceError
from tenants import selectors, services
from tenants.forms import AcceptInvitationForm, SignupForm
from tenants.ratelimit import rate_limited

BACKEND = "django.contrib.auth.backends.ModelBackend"


@require_http_methods(["GET", "POST"])
@rate_limited("signup")
def signup(request: HttpRequest, partner_slug: str | None = None) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    partners = selectors.signup_partners()
    if partner_slug is not None:
        partner = get_object_or_404(partners, slug=partner_slug)
    else:
        choices = list(partners[:2])
        if len(choices) != 1:
            # None, or several: ask which provider (each partner also hands out its own /signup/<slug>/ link).
            return render(request, "tenants/signup_choose.html", {"partners": partners})
        partner = choices[0]
    form = SignupForm(request.POST or None, partner=partner)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            tenant, user = services.tenant_signup(partner=partner, org_name=data["org_name"], email=data["email"],
                                                  password=data["password1"], full_name=data["full_name"])
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            token = services.email_confirmation_token(tenant=tenant)
            services.tenant_send_confirmation(
                tenant=tenant,
                confirm_url=request.build_absolute_uri(reverse("tenants:confirm_email", args=[token])),
            )
            login(request, user, backend=BACKEND)
            messages.success(request, f"Welcome! We sent a confirmation link to {user.email}.")
            return redirect("tenants:tenant_home")
    return render(request, "tenants/signup.html", {"form": form, "partner": partner})


@require_http_methods(["GET"])
@rate_limited("token", methods=("GET",))
def confirm_email(request: HttpRequest, token: str) -> HttpResponse:
    try:
        tenant = services.tenant_confirm_email(token=token)
    except ServiceError as exc:
        return render(request, "tenants/message.html", {"title": "Link not valid", "text": exc.message}, status=400)
    if request.user.is_authenticated:
        messages.success(request, "Your email address is confirmed.")
        return redirect("home")
    return render(request, "tenants/message.html", {
        "title": "Email confirmed", "text": f"The email address of {tenant.name} is confirmed. Log in to continue.",
        "login": True,
    })


@require_http_methods(["GET", "POST"])
@rate_limited("token", methods=("GET", "POST"))
def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invitation = services.invitation_from_token(token=token)
    except ServiceError as exc:
        return render(request, "tenants/message.html", {"title": "Invitation not valid", "text": exc.message},
                      status=400)
    user = request.user if request.user.is_authenticated else None
    account_exists = services.email_taken(email=invitation.email)
    form = None if (user or account_exists) else AcceptInvitationForm(request.POST or None, email=invitation.email)
    error = ""
    if request.method == "POST" and (form is None or form.is_valid()):
        if user is None and account_exists:
            error = "An account with this email exists: log in first, then open the link again."
        else:
            try:
                services.invitation_accept(
                    token=token, user=user,
                    password=form.cleaned_data["password1"] if form else "",
                    full_name=form.cleaned_data["full_name"] if form else "",
                )
            except ServiceError as exc:
                error = exc.message
            else:
                if user is None:
                    from django.contrib.auth import get_user_model

                    login(request, get_user_model().objects.get(username=invitation.email), backend=BACKEND)
                messages.success(request, f"You joined {invitation.tenant.name}.")
                return redirect("tenants:tenant_home")
    return render(request, "tenants/invite_accept.html", {
        "invitation": invitation, "form": form, "error": error, "account_exists": account_exists,
    })
