from rest_framework.routers import SimpleRouter

from tenants.api import views

router = SimpleRouter()
router.register("tenants", views.TenantViewSet, basename="tenant")
router.register("allocations", views.AllocationViewSet, basename="allocation")
router.register("attribution-rules", views.AttributionRuleViewSet, basename="attribution-rule")
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")
router.register("price-plans", views.PricePlanViewSet, basename="price-plan")

urlpatterns = router.urls
