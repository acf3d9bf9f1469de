from django.urls import path

from telemetry import views

urlpatterns = [
    path("sites/<slug:slug>/endpoints/<int:pk>/", views.endpoint_detail, name="endpoint_detail"),
    path("sites/<slug:slug>/endpoints/<int:pk>/live.json", views.endpoint_live, name="endpoint_live"),
    path("sites/<slug:slug>/endpoints/<int:pk>/charts/<slug:name>.json", views.endpoint_chart,
         name="endpoint_chart"),
]
