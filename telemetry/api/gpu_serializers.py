"""Validation of pushed GPU readings (the agent's wire format is `reading_to_dict`'s) and collector settings."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from rest_framework import serializers

from telemetry.models import GpuCollectorMode, NodeGpuCollector
from telemetry.retention import raw_retention_days

BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


def _int(lo: int, hi: int, **kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=lo, max_value=hi, required=False, allow_null=True, **kwargs)


class MigReadingSerializer(serializers.Serializer):
    uuid = serializers.CharField(max_length=64)
    profile = serializers.CharField(max_length=32, required=False, default="unknown")
    gpu_instance_id = _int(0, 1024)
    compute_instance_id = _int(0, 1024)
    compute_slices = _int(1, 8)
    memory_used_bytes = _int(0, BIGINT_MAX)
    memory_total_bytes = _int(0, BIGINT_MAX)


class GpuReadingSerializer(serializers.Serializer):
    uuid = serializers.CharField(max_length=64)
    index = serializers.IntegerField(min_value=0, max_value=255)
    name = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    serial = serializers.CharField(max_length=64, required=False, allow_null=True, allow_blank=True)
    pci_bus_id = serializers.CharField(max_length=32, required=False, allow_null=True, allow_blank=True)
    util_pct = _int(0, 100)
    memory_util_pct = _int(0, 100)
    memory_used_bytes = _int(0, BIGINT_MAX)
    memory_total_bytes = _int(0, BIGINT_MAX)
    power_w = serializers.FloatField(min_value=0, max_value=100_000, required=False, allow_null=True)
    energy_mj = _int(0, BIGINT_MAX)
    temperature_c = _int(-100, 300)
    sm_clock_mhz = _int(0, 100_000)
    mem_clock_mhz = _int(0, 100_000)
    throttle_reasons = _int(0, BIGINT_MAX)
    ecc_uncorrected_errors = _int(0, BIGINT_MAX)
    retired_pages_pending = serializers.BooleanField(required=False, allow_null=True, default=None)
    remapped_rows_correctable = _int(0, INT_MAX)
    remapped_rows_uncorrectable = _int(0, INT_MAX)
    row_remap_failure = serializers.BooleanField(required=False, allow_null=True, default=None)
    mig_mode = serializers.BooleanField(required=False, allow_null=True, default=None)
    mig_devices = serializers.ListField(child=MigReadingSerializer(), max_length=8, required=False, default=list)
    unsupported = serializers.DictField(child=serializers.CharField(max_length=300), required=False, default=dict)


class GpuFaultSerializer(serializers.Serializer):
    index = serializers.IntegerField(min_value=0, max_value=255)
    reason = serializers.CharField(max_length=500)
    uuid = serializers.CharField(max_length=64, required=False, allow_null=True, default=None)
    lost = serializers.BooleanField(required=False, default=False)


class NodeReportSerializer(serializers.Serializer):
    """One collection cycle pushed by a node agent."""

    hostname = serializers.CharField(max_length=253, required=False, allow_blank=True, default="")
    ts = serializers.DateTimeField(help_text="When the GPUs were read (ISO 8601 with offset; UTC preferred), by the "
                                             "node's clock. A node clock off by more than the tolerance is corrected, "
                                             "not refused.")
    sent_at = serializers.DateTimeField(
        required=False, allow_null=True,
        help_text="The node's clock as it sends this report: lets the server measure the node's clock offset even for "
                  "reports kept through an outage and sent late.")
    driver_version = serializers.CharField(max_length=32, required=False, allow_null=True, allow_blank=True)
    cuda_driver_version = serializers.CharField(max_length=32, required=False, allow_null=True, allow_blank=True)
    gpus = serializers.ListField(child=GpuReadingSerializer(), max_length=64)
    faults = serializers.ListField(child=GpuFaultSerializer(), max_length=64, required=False, default=list)
    error = serializers.CharField(max_length=2000, required=False, allow_null=True, allow_blank=True)
    complete = serializers.BooleanField(required=False, default=True)

    def validate_ts(self, value: dt.datetime) -> dt.datetime:
        # A ts in the future is not refused (that lost the readings of a node whose clock runs ahead): the view
        # re-times the report to the server's clock (telemetry/clock.py).
        now = timezone.now()
        if value < now - dt.timedelta(days=raw_retention_days()):
            raise serializers.ValidationError(f"ts is older than the {raw_retention_days()}-day raw retention.")
        return value

    def validate(self, attrs: dict) -> dict:
        sent_at = attrs.get("sent_at")
        if sent_at is not None and attrs["ts"] > sent_at:
            raise serializers.ValidationError({"sent_at": ["sent_at is earlier than ts: a report is sent after it "
                                                            "is read."]})
        # The report is re-timed by sent_at's offset; bounding its age also keeps the result a valid instant.
        if sent_at is not None and sent_at - attrs["ts"] > dt.timedelta(days=raw_retention_days()):
            raise serializers.ValidationError({"sent_at": [f"The report was read more than {raw_retention_days()} "
                                                            "days before it was sent (the raw retention)."]})
        return attrs

    def validate_gpus(self, value: list[dict]) -> list[dict]:
        uuids = [g["uuid"] for g in value]
        if len(uuids) != len(set(uuids)):
            raise serializers.ValidationError("Each GPU UUID may appear once per report.")
        return value


class AgentTokenSerializer(serializers.Serializer):
    node = serializers.IntegerField(read_only=True)
    hostname = serializers.CharField(read_only=True)
    token = serializers.CharField(read_only=True, help_text="Shown once; only its hash is stored.")


class NodeGpuCollectorSerializer(serializers.ModelSerializer):
    mode = serializers.ChoiceField(choices=GpuCollectorMode.choices)

    class Meta:
        model = NodeGpuCollector
        fields = ["node", "mode", "dcgm_url"]
        read_only_fields = ["node"]

    def validate(self, attrs: dict) -> dict:
        if attrs.get("mode") == GpuCollectorMode.DCGM and not attrs.get("dcgm_url"):
            raise serializers.ValidationError({"dcgm_url": ["dcgm mode needs the exporter's /metrics URL."]})
        return attrs
