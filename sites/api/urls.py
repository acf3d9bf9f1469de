from rest_framework.routers import SimpleRouter

from sites.api import views

router = SimpleRouter()
router.register("partners", views.PartnerViewSet, basename="partner")
router.register("sites", views.SiteViewSet, basename="site")
router.register("nodes", views.NodeViewSet, basename="node")
router.register("gpus", views.GpuViewSet, basename="gpu")
router.register("endpoints", views.ServingEndpointViewSet, basename="endpoint")

urlpatterns = router.urls
