"""`visible_to(user)` for every tenants model (DESIGN.md §5.6).

Three kinds of principal reach these querysets:
- partner staff (sites.Membership): the rows of their partner's tenants; owners/operators may write;
- tenant people (TenantMembership): the rows of their own tenant only;
- a tenant API key (tenants.authentication.ApiKeyUser): the rows of the key's tenant only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
from django.db.models import Q

from sites.choices import WRITE_ROLES

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


def api_key_tenant_id(user: AbstractBaseUser | AnonymousUser) -> int | None:
    """The tenant an API-key principal acts for (None for people)."""
    return getattr(user, "api_key_tenant_id", None)


def partner_ids_of(user: AbstractBaseUser | AnonymousUser, roles: tuple[str, ...] | None = None) -> models.QuerySet:
    from sites.models import Membership

    qs = Membership.objects.filter(user_id=user.pk)
    if roles is not None:
        qs = qs.filter(role__in=roles)
    return qs.values("partner_id")


def tenant_ids_of(user: AbstractBaseUser | AnonymousUser, roles: tuple[str, ...] | None = None) -> models.QuerySet:
    from tenants.models.tenants import TenantMembership

    qs = TenantMembership.objects.filter(user_id=user.pk)
    if roles is not None:
        qs = qs.filter(role__in=roles)
    return qs.values("tenant_id")


class TenantScopedQuerySet(models.QuerySet):
    """Subclasses name the path to the Tenant (`tenant_path`) and to the Partner (`partner_path`).

    `partner_reads = False` hides a model from partner staff (tenants' API keys are the tenant's business).
    """

    tenant_path = "tenant"
    partner_path = "tenant__partner"
    partner_reads = True

    def visible_to(self, user: AbstractBaseUser | AnonymousUser) -> TenantScopedQuerySet:
        if not user.is_authenticated:
            return self.none()
        key_tenant = api_key_tenant_id(user)
        if key_tenant is not None:
            return self.filter(**{self.tenant_path: key_tenant})
        if user.is_superuser:
            return self.all()
        q = Q(**{f"{self.tenant_path}__in": tenant_ids_of(user)})
        if self.partner_reads:
            q |= Q(**{f"{self.partner_path}__in": partner_ids_of(user)})
        return self.filter(q)

    def writable_by(self, user: AbstractBaseUser | AnonymousUser) -> TenantScopedQuerySet:
        """Rows partner owners/operators manage (approvals, allocations, rules, prices)."""
        if not user.is_authenticated or api_key_tenant_id(user) is not None:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(**{f"{self.partner_path}__in": partner_ids_of(user, WRITE_ROLES)})

    def of_partner_staff(self, user: AbstractBaseUser | AnonymousUser) -> TenantScopedQuerySet:
        """Only what the user sees as partner staff (partner pages never show tenant-side rows of other roles)."""
        if not user.is_authenticated or api_key_tenant_id(user) is not None:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(**{f"{self.partner_path}__in": partner_ids_of(user)})
