from django.urls import path

from telemetry.api import gpu_views

urlpatterns = [
    path("ingest/gpu-readings/", gpu_views.GpuReadingsIngestView.as_view(), name="gpu-readings-ingest"),
    path("nodes/<int:pk>/agent-token/", gpu_views.NodeAgentTokenView.as_view(), name="node-agent-token"),
    path("nodes/<int:pk>/gpu-collector/", gpu_views.NodeGpuCollectorView.as_view(), name="node-gpu-collector"),
]
