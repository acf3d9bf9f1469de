"""Tenants API. Reads go through `visible_to`; partner-side writes need owner/operator at the object's partner
(403 otherwise, 404 when the object is not visible at all); tenant-side writes (API keys) need a tenant admin."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from sites.models import Partner
from tenants import selectors, services
from tenants.api.serializers import (
    AllocationSerializer,
    ApiKeyCreatedSerializer,
    ApiKeySerializer,
    ApproveSerializer,
    AttributionRuleSerializer,
    PricePlanSerializer,
    ReasonSerializer,
    TenantSerializer,
)
from tenants.models import Allocation, ApiKey, AttributionRule, PricePlan, Tenant

READ_ONLY = "Your role at this partner is read-only."


def _partner_of(obj) -> int:
    if isinstance(obj, Tenant | PricePlan):
        return obj.partner_id
    return obj.tenant.partner_id


class PartnerManages(permissions.IsAuthenticated):
    """Anyone who sees an object reads it; only the partner's owners/operators change it."""

    message = READ_ONLY

    def has_object_permission(self, request: Request, view, obj) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        return request.user.is_superuser or _partner_of(obj) in selectors.partner_writable_ids(user=request.user)


def require_some_writable_partner(request: Request) -> None:
    # Before validating a create: a tenant user or viewer is refused (403) rather than told that the objects
    # they name "do not exist" (which their scoping makes true).
    if not (request.user.is_superuser or Partner.objects.writable_by(request.user).exists()):
        raise PermissionDenied(READ_ONLY)


class NowContextMixin:
    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "now": timezone.now()}


class TenantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
                    viewsets.GenericViewSet):
    """Tenants: partner staff see their partner's, tenant people and API keys see their own. PATCH
    `price_plan` and the decision actions are for the partner's owners/operators."""

    serializer_class = TenantSerializer
    permission_classes = [PartnerManages]
    filterset_fields = ["status"]
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[Tenant]:
        return Tenant.objects.visible_to(self.request.user).select_related("partner")

    def perform_update(self, serializer: TenantSerializer) -> None:
        if "price_plan" in serializer.validated_data:
            serializer.instance = services.tenant_assign_price_plan(
                tenant=serializer.instance, plan=serializer.validated_data["price_plan"], by=self.request.user)

    def _respond(self, tenant: Tenant) -> Response:
        return Response(TenantSerializer(tenant, context=self.get_serializer_context()).data)

    @extend_schema(request=ApproveSerializer, responses=TenantSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        tenant = self.get_object()
        data = ApproveSerializer(data=request.data, context=self.get_serializer_context())
        data.is_valid(raise_exception=True)
        return self._respond(services.tenant_approve(tenant=tenant, by=request.user, **data.validated_data))

    @extend_schema(request=ReasonSerializer, responses=TenantSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        tenant = self.get_object()
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._respond(services.tenant_reject(tenant=tenant, by=request.user, **data.validated_data))

    @extend_schema(request=ReasonSerializer, responses=TenantSerializer)
    @action(detail=True, methods=["post"])
    def suspend(self, request: Request, pk: str | None = None) -> Response:
        tenant = self.get_object()
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._respond(services.tenant_suspend(tenant=tenant, by=request.user, **data.validated_data))

    @extend_schema(request=None, responses=TenantSerializer)
    @action(detail=True, methods=["post"])
    def unsuspend(self, request: Request, pk: str | None = None) -> Response:
        return self._respond(services.tenant_unsuspend(tenant=self.get_object(), by=request.user))


class AllocationViewSet(NowContextMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                        viewsets.GenericViewSet):
    """Allocations keep history: create one, then `POST .../end/`; they are never edited or deleted."""

    serializer_class = AllocationSerializer
    permission_classes = [PartnerManages]
    filterset_fields = ["tenant"]

    def get_queryset(self) -> QuerySet[Allocation]:
        return selectors.allocation_list(user=self.request.user)

    def create(self, request: Request, *args, **kwargs) -> Response:
        require_some_writable_partner(request)
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: AllocationSerializer) -> None:
        data = serializer.validated_data
        self.check_object_permissions(self.request, data["tenant"])
        serializer.instance = services.allocation_create(by=self.request.user, **data)

    @extend_schema(request=None, responses=AllocationSerializer)
    @action(detail=True, methods=["post"])
    def end(self, request: Request, pk: str | None = None) -> Response:
        allocation = services.allocation_end(allocation=self.get_object(), by=request.user)
        return Response(self.get_serializer(allocation).data)


class AttributionRuleViewSet(viewsets.ModelViewSet):
    serializer_class = AttributionRuleSerializer
    permission_classes = [PartnerManages]
    filterset_fields = ["endpoint", "tenant", "label"]

    def get_queryset(self) -> QuerySet[AttributionRule]:
        return selectors.attribution_rule_list(user=self.request.user)

    def create(self, request: Request, *args, **kwargs) -> Response:
        require_some_writable_partner(request)
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: AttributionRuleSerializer) -> None:
        self.check_object_permissions(self.request, serializer.validated_data["tenant"])
        serializer.instance = services.attribution_rule_save(rule=AttributionRule(**serializer.validated_data),
                                                             by=self.request.user)

    def perform_update(self, serializer: AttributionRuleSerializer) -> None:
        rule = serializer.instance
        if "tenant" in serializer.validated_data:
            self.check_object_permissions(self.request, serializer.validated_data["tenant"])
        for key, value in serializer.validated_data.items():
            setattr(rule, key, value)
        serializer.instance = services.attribution_rule_save(rule=rule, by=self.request.user)

    def perform_destroy(self, instance: AttributionRule) -> None:
        services.attribution_rule_delete(rule=instance, by=self.request.user)


class ApiKeyViewSet(NowContextMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                    mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The tenant's API keys. POST (tenant admins) returns the key once, in `key`; DELETE revokes."""

    serializer_class = ApiKeySerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_throttles(self):
        if self.action == "create":
            self.throttle_scope = "auth"
            return [ScopedRateThrottle()]
        return super().get_throttles()

    def get_queryset(self) -> QuerySet[ApiKey]:
        return selectors.api_key_list(user=self.request.user)

    def _admin_tenant_or_403(self, tenant_id: int | None = None) -> Tenant:
        membership = selectors.tenant_membership_of(user=self.request.user)
        if membership is None or not membership.is_admin or (tenant_id and membership.tenant_id != tenant_id):
            raise PermissionDenied("Only the tenant's admins manage its API keys.")
        return membership.tenant

    @extend_schema(responses={201: ApiKeyCreatedSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        tenant = self._admin_tenant_or_403()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, raw = services.api_key_create(tenant=tenant, by=request.user, **serializer.validated_data)
        key.key = raw
        response = Response(ApiKeyCreatedSerializer(key, context=self.get_serializer_context()).data,
                            status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    def perform_destroy(self, instance: ApiKey) -> None:
        self._admin_tenant_or_403(instance.tenant_id)
        services.api_key_revoke(key=instance, by=self.request.user)


class PricePlanViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                       mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Price plans: the partner's staff read, owners/operators write; a tenant reads the plan it is on.
    Writing `rates` replaces the plan's rates. Issue 6 adds tiers."""

    serializer_class = PricePlanSerializer
    permission_classes = [PartnerManages]

    def get_queryset(self) -> QuerySet[PricePlan]:
        return selectors.price_plan_list(user=self.request.user)

    def create(self, request: Request, *args, **kwargs) -> Response:
        require_some_writable_partner(request)
        return super().create(request, *args, **kwargs)

    def _save(self, serializer: PricePlanSerializer, plan: PricePlan) -> None:
        data = dict(serializer.validated_data)
        rates = data.pop("rates", None)
        for key, value in data.items():
            setattr(plan, key, value)
        serializer.instance = services.price_plan_save(plan=plan, by=self.request.user, rates=rates)

    def perform_create(self, serializer: PricePlanSerializer) -> None:
        self.check_object_permissions(self.request, PricePlan(partner=serializer.validated_data["partner"]))
        self._save(serializer, PricePlan())

    def perform_update(self, serializer: PricePlanSerializer) -> None:
        partner = serializer.validated_data.get("partner")
        if partner is not None and partner.pk != serializer.instance.partner_id:
            from rest_framework.exceptions import ValidationError

            raise ValidationError({"partner": ["A price plan cannot move to another partner."]})
        self._save(serializer, serializer.instance)
