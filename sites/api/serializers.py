from __future__ import annotations

from rest_framework import serializers

from factory_portal.api import VisibleRelatedField
from sites.models import Gpu, MigDevice, Node, Partner, ServingEndpoint, Site


class ModelCleanMixin:
    """Run the model's own validation (clean + constraints) so API and forms refuse the same input."""

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        instance = self.instance or self.Meta.model()
        for key, value in attrs.items():
            setattr(instance, key, value)
        from django.core.exceptions import ValidationError

        try:
            instance.full_clean(exclude=self.clean_exclude())
        except ValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return attrs

    def clean_exclude(self) -> list[str]:
        return [name for name in ("slug",) if name not in self.fields or self.fields[name].read_only]


class PartnerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Partner
        fields = ["id", "name", "slug", "created_at"]


class SiteSerializer(ModelCleanMixin, serializers.ModelSerializer):
    partner = VisibleRelatedField(queryset=Partner.objects.all())

    class Meta:
        model = Site
        fields = [
            "id", "partner", "name", "slug", "country", "city", "time_zone", "status", "contract_date",
            "target_live_date", "power_capacity_kw", "pue", "electricity_price_per_kwh", "currency",
            "capex_per_gpu", "amortization_months", "opex_per_gpu_hour", "utilization_target_pct",
            "gpu_poll_interval_s", "baseline_driver_version", "baseline_cuda_version", "baseline_trtllm_version",
            "baseline_nemo_version", "baseline_engine_versions", "created_at", "updated_at",
        ]
        read_only_fields = ["slug", "created_at", "updated_at"]
        extra_kwargs = {"target_live_date": {"required": False}}

    def update(self, instance: Site, validated_data: dict) -> Site:
        if "partner" in validated_data and validated_data["partner"].pk != instance.partner_id:
            raise serializers.ValidationError({"partner": ["A site cannot move to another partner."]})
        return super().update(instance, validated_data)


class NodeSerializer(ModelCleanMixin, serializers.ModelSerializer):
    site = VisibleRelatedField(queryset=Site.objects.all())

    class Meta:
        model = Node
        fields = [
            "id", "site", "hostname", "status", "last_seen_at", "last_error", "driver_version",
            "cuda_driver_version", "clock_offset_s", "created_at",
        ]
        read_only_fields = ["last_seen_at", "last_error", "clock_offset_s", "created_at"]


class MigDeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = MigDevice
        fields = ["id", "uuid", "profile", "memory_total_bytes", "compute_slices", "last_seen_at"]


class GpuSerializer(ModelCleanMixin, serializers.ModelSerializer):
    node = VisibleRelatedField(queryset=Node.objects.all())
    mig_devices = MigDeviceSerializer(many=True, read_only=True)

    class Meta:
        model = Gpu
        fields = [
            "id", "node", "uuid", "index", "name", "memory_total_bytes", "serial", "pci_bus_id", "driver_version",
            "cuda_driver_version", "mig_mode", "status", "last_seen_at", "last_error", "simulated", "mig_devices",
        ]
        read_only_fields = ["status", "last_seen_at", "last_error", "simulated"]


class ServingEndpointSerializer(ModelCleanMixin, serializers.ModelSerializer):
    site = VisibleRelatedField(queryset=Site.objects.all())
    node = VisibleRelatedField(queryset=Node.objects.all(), required=False, allow_null=True)
    bearer_token = serializers.CharField(
        write_only=True, required=False, allow_blank=True, help_text="Stored encrypted; never returned."
    )
    has_bearer_token = serializers.BooleanField(read_only=True)

    class Meta:
        model = ServingEndpoint
        fields = [
            "id", "site", "node", "name", "engine", "metrics_url", "bearer_token", "has_bearer_token",
            "served_model", "enabled", "health", "last_error", "last_scraped_at", "detected_engine",
            "engine_version", "simulated", "created_at",
        ]
        read_only_fields = [
            "health", "last_error", "last_scraped_at", "detected_engine", "engine_version", "simulated", "created_at"
        ]

    def validate(self, attrs: dict) -> dict:
        token = attrs.pop("bearer_token", None)
        attrs = super().validate(attrs)
        if token is not None:
            attrs["bearer_token"] = token
        return attrs
