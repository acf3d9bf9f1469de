from django.urls import path

from telemetry.api import metering_views

urlpatterns = [
    path("usage/", metering_views.UsageListView.as_view(), name="usage-list"),
]
