"""Tenants: organizations buying capacity from a partner, their people, requests, allocations, rules, keys,
price plans and the audit log."""

from tenants.models.access import ApiKey, TenantInvitation
from tenants.models.allocations import Allocation, AttributionRule
from tenants.models.audit import AuditEvent
from tenants.models.pricing import PricePlan, PriceRate
from tenants.models.scoping import TenantScopedQuerySet, api_key_tenant_id
from tenants.models.tenants import CapacityRequest, Tenant, TenantMembership

__all__ = [
    "Allocation", "ApiKey", "AttributionRule", "AuditEvent", "CapacityRequest", "PricePlan", "PriceRate",
    "Tenant", "TenantInvitation", "TenantMembership", "TenantScopedQuerySet", "api_key_tenant_id",
]
