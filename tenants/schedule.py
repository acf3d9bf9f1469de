"""Periodic tasks of this app, merged into Celery beat by factory_portal.celery."""

BEAT_SCHEDULE: dict = {
    # Attribution follows the hourly usage rollup (every minute): re-meter the open months every 5 minutes.
    "tenants-usage-refresh": {
        "task": "tenants.tenant_usage_refresh_task",
        "schedule": 300.0,
        "options": {"queue": "rollup", "expires": 300.0},
    },
    # Drafts of last month's invoices, refreshed daily until a person issues them.
    "tenants-invoice-drafts": {
        "task": "tenants.invoices_generate_for_month_task",
        "schedule": 86400.0,
        "options": {"queue": "rollup", "expires": 3600.0},
    },
}
