from django.urls import path
from rest_framework.routers import SimpleRouter

from tenants.api import economics, views

router = SimpleRouter()
router.register("tenants", views.TenantViewSet, basename="tenant")
router.register("allocations", views.AllocationViewSet, basename="allocation")
router.register("attribution-rules", views.AttributionRuleViewSet, basename="attribution-rule")
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")
router.register("price-plans", views.PricePlanViewSet, basename="price-plan")
router.register("invoices", economics.InvoiceViewSet, basename="invoice")

urlpatterns = [
    *router.urls,
    path("economics/sites/<int:pk>/", economics.SiteEconomicsView.as_view(), name="economics-site"),
    path("economics/tenants/<int:pk>/", economics.TenantEconomicsView.as_view(), name="economics-tenant"),
    path("economics/portfolio/", economics.PortfolioView.as_view(), name="economics-portfolio"),
]
