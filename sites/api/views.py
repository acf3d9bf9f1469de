from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import mixins, viewsets
from rest_framework.exceptions import PermissionDenied

from factory_portal.api import PartnerRolePermission, partner_id_of
from sites import services
from sites.api.serializers import (
    GpuSerializer,
    NodeSerializer,
    PartnerSerializer,
    ServingEndpointSerializer,
    SiteSerializer,
)
from sites.filters import GpuFilterSet, NodeFilterSet, ServingEndpointFilterSet, SiteFilterSet
from sites.models import Gpu, Node, Partner, ServingEndpoint, Site
from sites.selectors import user_can_write_partner


class PartnerViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PartnerSerializer
    permission_classes = [PartnerRolePermission]

    def get_queryset(self) -> QuerySet[Partner]:
        return Partner.objects.visible_to(self.request.user)


class InventoryViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """List/detail for members, create/update for owners and operators."""

    permission_classes = [PartnerRolePermission]
    model: type = Site
    related_for_list: tuple[str, ...] = ()

    def get_queryset(self) -> QuerySet:
        return self.model.objects.visible_to(self.request.user).select_related(*self.related_for_list)

    def check_parent_writable(self, serializer) -> None:
        # The parent (partner, site or node) is visible — the scoped field checked that — but the role
        # may be read-only there: that is a 403, not a 400.
        probe = self.model(**{k: v for k, v in serializer.validated_data.items() if k in self.parent_fields})
        if not user_can_write_partner(user=self.request.user, partner_id=partner_id_of(probe)):
            raise PermissionDenied("Your role at this partner is read-only.")

    parent_fields: tuple[str, ...] = ()

    def perform_create(self, serializer) -> None:
        self.check_parent_writable(serializer)
        serializer.save()

    def perform_update(self, serializer) -> None:
        if any(name in serializer.validated_data for name in self.parent_fields):
            self.check_parent_writable(serializer)
        serializer.save()


class SiteViewSet(InventoryViewSet):
    model = Site
    serializer_class = SiteSerializer
    filterset_class = SiteFilterSet
    related_for_list = ("partner",)
    parent_fields = ("partner",)

    def perform_create(self, serializer) -> None:
        self.check_parent_writable(serializer)
        site = Site(**serializer.validated_data)
        serializer.instance = services.site_save(site=site)

    def perform_update(self, serializer) -> None:
        site = serializer.instance
        for key, value in serializer.validated_data.items():
            setattr(site, key, value)
        services.site_save(site=site)


class NodeViewSet(InventoryViewSet):
    model = Node
    serializer_class = NodeSerializer
    filterset_class = NodeFilterSet
    related_for_list = ("site",)
    parent_fields = ("site",)


class GpuViewSet(InventoryViewSet):
    model = Gpu
    serializer_class = GpuSerializer
    filterset_class = GpuFilterSet
    related_for_list = ("node", "node__site")
    parent_fields = ("node",)

    def get_queryset(self) -> QuerySet[Gpu]:
        return super().get_queryset().prefetch_related("mig_devices")


class ServingEndpointViewSet(InventoryViewSet):
    model = ServingEndpoint
    serializer_class = ServingEndpointSerializer
    filterset_class = ServingEndpointFilterSet
    related_for_list = ("site",)
    parent_fields = ("site",)

    def _save(self, serializer) -> None:
        data = dict(serializer.validated_data)
        token = data.pop("bearer_token", None)
        endpoint = serializer.instance or ServingEndpoint()
        for key, value in data.items():
            setattr(endpoint, key, value)
        serializer.instance = services.endpoint_save(
            endpoint=endpoint, bearer_token=token or None, clear_token=token == ""
        )

    def perform_create(self, serializer) -> None:
        self.check_parent_writable(serializer)
        self._save(serializer)

    def perform_update(self, serializer) -> None:
        if "site" in serializer.validated_data:
            self.check_parent_writable(serializer)
        self._save(serializer)
