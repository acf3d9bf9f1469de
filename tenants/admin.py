from django.contrib import admin

from tenants.models import (
    Allocation,
    ApiKey,
    AttributionRule,
    AuditEvent,
    CapacityRequest,
    PricePlan,
    PriceRate,
    Tenant,
    TenantInvitation,
    TenantMembership,
)


class TenantMembershipInline(admin.TabularInline):
    model = TenantMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "partner", "status", "email_confirmed_at", "suspended_at", "price_plan", "created_at"]
    list_filter = ["status", "partner"]
    search_fields = ["name", "slug", "contact_email"]
    inlines = [TenantMembershipInline]


@admin.register(CapacityRequest)
class CapacityRequestAdmin(admin.ModelAdmin):
    list_display = ["tenant", "gpu_count", "mig_profile", "mig_count", "expected_tokens_per_month", "start_date",
                    "status"]
    list_filter = ["status"]


@admin.register(Allocation)
class AllocationAdmin(admin.ModelAdmin):
    list_display = ["tenant", "gpu", "mig_device", "endpoint", "starts_at", "ends_at"]
    list_filter = ["tenant__partner"]
    raw_id_fields = ["gpu", "mig_device", "endpoint", "capacity_request"]


@admin.register(AttributionRule)
class AttributionRuleAdmin(admin.ModelAdmin):
    list_display = ["endpoint", "label", "value", "tenant", "effective_from", "effective_to"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "prefix", "expires_at", "revoked_at", "last_used_at"]
    readonly_fields = ["prefix", "key_hash", "last_used_at"]


@admin.register(TenantInvitation)
class TenantInvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "tenant", "role", "accepted_at", "revoked_at"]


class PriceRateInline(admin.TabularInline):
    model = PriceRate
    extra = 0


@admin.register(PricePlan)
class PricePlanAdmin(admin.ModelAdmin):
    list_display = ["name", "partner", "currency", "effective_from", "effective_to"]
    inlines = [PriceRateInline]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is written by services, never edited."""

    list_display = ["created_at", "actor_label", "action", "partner", "tenant", "summary"]
    list_filter = ["action", "partner"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
