from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants and economics"

    def ready(self) -> None:
        from telemetry.metering_selectors import register_usage_tenant_filter
        from tenants import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from tenants.metering import usage_tenant_filter

        # GET /api/v1/usage/?tenant=…, and tenant people's own usage, read attribution from this app.
        register_usage_tenant_filter(usage_tenant_filter)
