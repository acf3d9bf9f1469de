from __future__ import annotations

from django.http import HttpRequest


def navigation(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from sites.selectors import partner_roles_for

    roles = partner_roles_for(user=user)
    return {"nav_is_partner_member": bool(roles) or user.is_superuser, "nav_partner_roles": roles}
