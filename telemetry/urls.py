from django.urls import include, path

app_name = "telemetry"

urlpatterns = [
    path("", include("telemetry.gpu_urls")),
    path("", include("telemetry.metering_urls")),
]
