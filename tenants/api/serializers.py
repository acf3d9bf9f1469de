from __future__ import annotations

from rest_framework import serializers

from factory_portal.api import VisibleRelatedField
from sites.models import Gpu, MigDevice, Partner, ServingEndpoint
from tenants.models import Allocation, ApiKey, AttributionRule, PricePlan, PriceRate, PriceTier, Tenant


class TenantSerializer(serializers.ModelSerializer):
    price_plan = VisibleRelatedField(queryset=PricePlan.objects.all(), required=False, allow_null=True)
    suspended = serializers.BooleanField(source="is_suspended", read_only=True)

    class Meta:
        model = Tenant
        fields = [
            "id", "partner", "name", "slug", "status", "contact_email", "email_confirmed_at", "decision_reason",
            "decided_at", "suspended", "suspended_at", "suspension_reason", "price_plan", "created_at",
        ]
        read_only_fields = [f for f in fields if f != "price_plan"]


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class ApproveSerializer(ReasonSerializer):
    price_plan = VisibleRelatedField(queryset=PricePlan.objects.all(), required=False, allow_null=True)


class AllocationSerializer(serializers.ModelSerializer):
    tenant = VisibleRelatedField(queryset=Tenant.objects.all())
    gpu = VisibleRelatedField(queryset=Gpu.objects.all(), required=False, allow_null=True)
    mig_device = VisibleRelatedField(queryset=MigDevice.objects.all(), required=False, allow_null=True)
    endpoint = VisibleRelatedField(queryset=ServingEndpoint.objects.all(), required=False, allow_null=True)
    tenant_name = serializers.CharField(source="tenant.name", read_only=True)
    kind = serializers.CharField(read_only=True)
    target_label = serializers.CharField(read_only=True)
    active = serializers.SerializerMethodField()

    class Meta:
        model = Allocation
        fields = [
            "id", "tenant", "tenant_name", "kind", "gpu", "mig_device", "endpoint", "target_label", "starts_at",
            "ends_at", "active", "note", "created_at",
        ]
        read_only_fields = ["created_at"]
        extra_kwargs = {"starts_at": {"required": False}}

    def get_active(self, obj: Allocation) -> bool:
        return obj.is_active(self.context["now"])

    def validate(self, attrs: dict) -> dict:
        chosen = [k for k in ("gpu", "mig_device", "endpoint") if attrs.get(k) is not None]
        if len(chosen) != 1:
            raise serializers.ValidationError("Give exactly one of gpu, mig_device, endpoint.")
        return attrs


class AttributionRuleSerializer(serializers.ModelSerializer):
    endpoint = VisibleRelatedField(queryset=ServingEndpoint.objects.all())
    tenant = VisibleRelatedField(queryset=Tenant.objects.all())
    endpoint_name = serializers.CharField(source="endpoint.name", read_only=True)
    tenant_name = serializers.CharField(source="tenant.name", read_only=True)
    matcher = serializers.CharField(read_only=True)

    class Meta:
        model = AttributionRule
        fields = ["id", "endpoint", "endpoint_name", "label", "value", "matcher", "tenant", "tenant_name",
                  "effective_from", "effective_to", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {"effective_from": {"required": False}, "label": {"required": False},
                        "value": {"required": False}}


class ApiKeySerializer(serializers.ModelSerializer):
    state = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "expires_at", "revoked_at", "last_used_at", "state", "created_at"]
        read_only_fields = ["prefix", "revoked_at", "last_used_at", "created_at"]

    def get_state(self, obj: ApiKey) -> str:
        return obj.state(self.context["now"])


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The full key. Returned once, never again.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]


class PriceTierSerializer(serializers.ModelSerializer):
    class Meta:
        model = PriceTier
        fields = ["threshold_tokens", "input_price_per_mtok", "output_price_per_mtok"]
        extra_kwargs = {
            "threshold_tokens": {"min_value": 1, "max_value": 10**18},
            "input_price_per_mtok": {"min_value": 0},
            "output_price_per_mtok": {"min_value": 0},
        }


class PriceRateSerializer(serializers.ModelSerializer):
    tiers = PriceTierSerializer(many=True, required=False,
                                help_text="Volume tiers: beyond threshold_tokens of a kind in a month, these prices.")

    class Meta:
        model = PriceRate
        fields = ["model", "input_price_per_mtok", "output_price_per_mtok", "tiers"]
        extra_kwargs = {
            "input_price_per_mtok": {"min_value": 0},
            "output_price_per_mtok": {"min_value": 0},
        }
        validators: list = []  # (plan, model) uniqueness is checked by the service across the submitted rows


class PricePlanSerializer(serializers.ModelSerializer):
    partner = VisibleRelatedField(queryset=Partner.objects.all())
    rates = PriceRateSerializer(many=True, required=False)

    class Meta:
        model = PricePlan
        fields = ["id", "partner", "name", "currency", "effective_from", "effective_to", "notes", "rates",
                  "created_at"]
        read_only_fields = ["created_at"]
        validators: list = []  # the service runs full_clean (unique name per partner) with a message
