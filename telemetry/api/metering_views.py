"""`GET /api/v1/usage/`: token usage per bucket, endpoint and model, scoped to the user's partners."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from telemetry import metering_selectors
from telemetry.models.metering import UsageBucket


class UsageQuerySerializer(serializers.Serializer):
    site = serializers.SlugField(required=False, help_text="Site slug.")
    endpoint = serializers.IntegerField(required=False, min_value=1, help_text="Serving endpoint id.")
    model = serializers.CharField(required=False, max_length=300)
    tenant = serializers.CharField(required=False, max_length=200,
                                   help_text="Tenant (needs the tenants app's attribution rules).")
    start = serializers.DateTimeField(required=False, help_text="Bucket start ≥ start (ISO 8601).")
    end = serializers.DateTimeField(required=False, help_text="Bucket start < end (ISO 8601).")
    bucket = serializers.ChoiceField(choices=UsageBucket.choices, default=UsageBucket.HOUR)


class UsageRowSerializer(serializers.Serializer):
    bucket_start = serializers.DateTimeField()
    site = serializers.CharField()
    endpoint = serializers.IntegerField(source="endpoint_id")
    endpoint_name = serializers.CharField()
    model = serializers.CharField()
    prompt_tokens = serializers.IntegerField()
    generation_tokens = serializers.IntegerField()
    requests_ok = serializers.IntegerField()
    requests_failed = serializers.IntegerField()


class UsageListView(GenericAPIView):
    """Usage rollups; filters `site`, `endpoint`, `model`, `tenant`, `start`, `end`, `bucket` (hour/day)."""

    permission_classes = [IsAuthenticated]
    serializer_class = UsageRowSerializer
    filter_backends: list = []

    def get(self, request: Request) -> Response:
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        rows = metering_selectors.usage_rows(
            user=request.user, bucket=params["bucket"], site=params.get("site"), endpoint_id=params.get("endpoint"),
            model=params.get("model"), tenant=params.get("tenant"), start=params.get("start"),
            end=params.get("end"),
        )
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(UsageRowSerializer(page, many=True).data)
