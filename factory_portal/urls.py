from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from factory_portal import views
from factory_portal.api import TokenLoginView

api_v1 = [
    path("auth/token/", TokenLoginView.as_view(), name="api-token"),
    path("", include("sites.api.urls")),
    path("", include("telemetry.api.urls")),
    path("", include("tenants.api.urls")),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("sites.urls")),
    path("", include("telemetry.urls")),
    path("", include("tenants.urls")),
]
