from django.urls import include, path

urlpatterns = [
    path("", include("telemetry.api.gpu_urls")),
    path("", include("telemetry.api.metering_urls")),
]
