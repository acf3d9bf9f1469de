from django.urls import path

from sites import views

app_name = "sites"

urlpatterns = [
    path("sites/", views.site_list, name="site_list"),
    path("sites/new/", views.site_create, name="site_create"),
    path("sites/overview.json", views.overview_data, name="overview_data"),
    path("sites/charts/<slug:name>.json", views.overview_chart, name="overview_chart"),
    path("sites/<slug:slug>/", views.site_detail, name="site_detail"),
    path("sites/<slug:slug>/edit/", views.site_edit, name="site_edit"),
    path("sites/<slug:slug>/live.json", views.site_data, name="site_data"),
    path("sites/<slug:slug>/charts/<slug:name>.json", views.site_chart, name="site_chart"),
    path("sites/<slug:slug>/milestones/plan/", views.milestone_plan_create, name="milestone_plan_create"),
    path("sites/<slug:slug>/milestones/<int:pk>/edit/", views.milestone_edit, name="milestone_edit"),
    path("sites/<slug:slug>/nodes/new/", views.node_form, name="node_create"),
    path("sites/<slug:slug>/nodes/<int:pk>/edit/", views.node_form, name="node_edit"),
    path("sites/<slug:slug>/gpus/new/", views.gpu_form, name="gpu_create"),
    path("sites/<slug:slug>/gpus/<int:pk>/edit/", views.gpu_form, name="gpu_edit"),
    path("sites/<slug:slug>/endpoints/new/", views.endpoint_form, name="endpoint_create"),
    path("sites/<slug:slug>/endpoints/<int:pk>/edit/", views.endpoint_form, name="endpoint_edit"),
]
