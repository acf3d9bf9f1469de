from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "telemetry"
    verbose_name = "Telemetry and metering"

    def ready(self) -> None:
        from telemetry import (
            schema,  # noqa: F401  (registers the OpenAPI auth extension)
            views,  # noqa: F401  (registers the dashboards' card provider and charts)
        )
