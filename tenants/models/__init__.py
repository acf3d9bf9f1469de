"""Tenants: organizations buying capacity from a partner, their people, requests, allocations, rules, keys,
price plans and the audit log."""

from tenants.models.access import ApiKey, TenantInvitation
from tenants.models.allocations import Allocation, AttributionRule
from tenants.models.audit import AuditEvent
from tenants.models.billing import Invoice, InvoiceLine, TenantUsage
from tenants.models.pricing import PricePlan, PriceRate, PriceTier
from tenants.models.scoping import TenantScopedQuerySet, api_key_tenant_id
from tenants.models.tenants import CapacityRequest, Tenant, TenantMembership

__all__ = [
    "Allocation", "ApiKey", "AttributionRule", "AuditEvent", "CapacityRequest", "Invoice", "InvoiceLine",
    "PricePlan", "PriceRate", "PriceTier", "Tenant", "TenantInvitation", "TenantMembership", "TenantScopedQuerySet",
    "TenantUsage", "api_key_tenant_id",
]
