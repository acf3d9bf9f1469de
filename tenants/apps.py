from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants and economics"

    def ready(self) -> None:
        from sites.dashboard import register_card_provider
        from telemetry.metering_selectors import register_usage_tenant_filter
        from tenants import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from tenants.economics_cards import site_cards_economics
        from tenants.metering import usage_tenant_filter

        # GET /api/v1/usage/?tenant=…, and tenant people's own usage, read attribution from this app.
        register_usage_tenant_filter(usage_tenant_filter)
        # Revenue today, cost per million tokens and margin on the partner overview's site cards.
        register_card_provider("economics", site_cards_economics)
