"""Tenant API keys as a DRF authentication class.

    Authorization: Bearer fpk_...        or        Authorization: Api-Key fpk_...

The request then acts as the key's tenant with a tenant member's rights: it reads the tenant's own rows
(every tenants queryset's `visible_to` honours `api_key_tenant_id`) and sees no partner inventory (it is
nobody's partner member). It cannot manage keys, members or anything partner-side.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions
from rest_framework.request import Request

# Imported by DRF's settings while rest_framework.views is still loading: keep this module free of imports
# that reach rest_framework.views (services → factory_portal.exceptions); they are done inside authenticate().
API_KEY_PREFIX = "fpk"
SCHEMES = (b"bearer", b"api-key")


class ApiKeyUser(AnonymousUser):
    """The principal of an API-key request: authenticated, no Django user row, bound to one tenant."""

    def __init__(self, *, tenant_id: int, prefix: str, key_id: int) -> None:
        self.api_key_tenant_id = tenant_id
        self.api_key_prefix = prefix
        self.api_key_id = key_id

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"API key {self.api_key_prefix}…"

    def get_username(self) -> str:
        return str(self)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request):
        header = authentication.get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() not in SCHEMES:
            return None
        raw = header[1].decode("latin-1", errors="replace")
        if not raw.startswith(f"{API_KEY_PREFIX}_"):
            return None  # another kind of bearer token (node agents): let the next class try
        from tenants.services import api_key_authenticate

        key = api_key_authenticate(raw=raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        return ApiKeyUser(tenant_id=key.tenant_id, prefix=key.prefix, key_id=key.pk), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
