from django.urls import path

from telemetry import views

urlpatterns = [
    path("sites/<slug:slug>/gpus/<int:pk>/", views.gpu_detail, name="gpu_detail"),
    path("sites/<slug:slug>/gpus/<int:pk>/live.json", views.gpu_live, name="gpu_live"),
    path("sites/<slug:slug>/gpus/<int:pk>/charts/<slug:name>.json", views.gpu_chart, name="gpu_chart"),
]
