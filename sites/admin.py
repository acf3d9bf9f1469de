from django.contrib import admin

from sites.models import Gpu, Membership, MigDevice, Node, Partner, ServingEndpoint, Site


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "partner", "role"]
    list_filter = ["role", "partner"]
    search_fields = ["user__username", "user__email", "partner__name"]
    autocomplete_fields = ["user", "partner"]


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ["name", "partner", "status", "country", "city", "power_capacity_kw", "pue", "target_live_date"]
    list_filter = ["status", "partner", "country"]
    search_fields = ["name", "slug", "city"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["hostname", "site", "status", "last_seen_at", "driver_version"]
    list_filter = ["status", "site__partner"]
    search_fields = ["hostname"]


class MigDeviceInline(admin.TabularInline):
    model = MigDevice
    extra = 0


@admin.register(Gpu)
class GpuAdmin(admin.ModelAdmin):
    list_display = ["uuid", "node", "index", "name", "status", "mig_mode", "last_seen_at", "simulated"]
    list_filter = ["status", "mig_mode", "simulated", "node__site"]
    search_fields = ["uuid", "serial", "node__hostname"]
    inlines = [MigDeviceInline]


@admin.register(ServingEndpoint)
class ServingEndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "site", "engine", "metrics_url", "health", "last_scraped_at", "simulated"]
    list_filter = ["engine", "health", "site__partner"]
    search_fields = ["name", "metrics_url", "served_model"]
    exclude = ["bearer_token_encrypted"]
