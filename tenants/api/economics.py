"""Economics and invoices API.

- `GET /api/v1/economics/sites/<id>/`, `/economics/portfolio/`: partner staff (a tenant never sees cost or
  margin: sites are invisible to it → 404; the portfolio → 403).
- `GET /api/v1/economics/tenants/<id>/`: partner staff get spend, cost share and margin; the tenant's own people
  and API keys get their spend only (no cost, no margin fields at all).
- `/api/v1/invoices/`: partner staff see their tenants' invoices, tenant people and keys their own; owners and
  operators `generate`, `issue`, `pay` and `void`; `GET .../csv/` exports one.

Query `start`/`end` (ISO 8601; default: this UTC month so far). Decimals are strings with 6 places (figures are
exact until then; invoice amounts are already rounded to the currency's minor unit).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from factory_portal.money import round_money
from tenants import economics_selectors as es
from tenants import invoicing, selectors
from tenants.api.views import PartnerManages, require_some_writable_partner
from tenants.models import Invoice, InvoiceLine, Tenant

PLACES = Decimal("0.000001")
RANGE_PARAMS = [
    OpenApiParameter("start", OpenApiTypes.DATETIME, description="Period start (inclusive), ISO 8601."),
    OpenApiParameter("end", OpenApiTypes.DATETIME, description="Period end (exclusive), ISO 8601."),
]


def plain(value):
    """JSON-ready: Decimals as strings with 6 places, datetimes ISO 8601, containers recursively."""
    if isinstance(value, Decimal):
        return str(value.quantize(PLACES))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


class RangeSerializer(serializers.Serializer):
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict) -> dict:
        now = timezone.now()
        attrs.setdefault("end", now)
        attrs.setdefault("start", now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0))
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["end must be after start."]})
        if attrs["end"] - attrs["start"] > dt.timedelta(days=400):
            raise serializers.ValidationError({"end": ["A period can span at most 400 days."]})
        return attrs


def _range(request: Request) -> tuple[dt.datetime, dt.datetime]:
    query = RangeSerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data["start"], query.validated_data["end"]


def _partner_staff_or_403(request: Request) -> None:
    if not selectors.is_partner_staff(user=request.user):
        raise PermissionDenied("Cost and margin figures are for partner staff.")


class SiteEconomicsView(APIView):
    """One site's figures over the period: `revenue`, `cost`, `cost_per_mtok`, `revenue_per_mtok`, `margin`,
    `energy_kwh` (GPU), `facility_energy_kwh`, `energy_estimated`, `tokens_per_kwh`, `gpu_utilization_pct`,
    `allocation_ratio`, the cost parts, `definitions`, and the what-if (`whatif`)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(parameters=RANGE_PARAMS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, pk: int) -> Response:
        site = es.site_get(user=request.user, site_id=pk)
        start, end = _range(request)
        figures = es.site_economics(site=site, start=start, end=end)
        whatif = es.site_whatif(site=site, start=start, end=end, figures=figures)
        return Response(plain({**figures, "whatif": whatif, "definitions": es.economics.DEFINITIONS}))


class TenantEconomicsView(APIView):
    """A tenant's tokens and `revenue` (its spend) per model; partner staff also get `cost`, `cost_per_mtok`
    and `margin` (the tenant's share of each site's cost, by tokens)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(parameters=RANGE_PARAMS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, pk: int) -> Response:
        tenant = es.tenant_get(user=request.user, tenant_id=pk)
        start, end = _range(request)
        with_cost = Tenant.objects.of_partner_staff(request.user).filter(pk=tenant.pk).exists()
        return Response(plain(es.tenant_economics(tenant=tenant, start=start, end=end, with_cost=with_cost)))


class PortfolioView(APIView):
    """The partner's sites side by side: contracted vs drawn MW, utilization, revenue, cost, margin, tenant
    concentration (`largest_tenant_share` of revenue). `partner` narrows to one partner."""

    permission_classes = [IsAuthenticated]

    @extend_schema(parameters=[*RANGE_PARAMS, OpenApiParameter("partner", OpenApiTypes.INT)],
                   responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        _partner_staff_or_403(request)
        start, end = _range(request)
        partner = request.query_params.get("partner")
        if partner is not None and not partner.isdigit():
            return Response({"partner": ["A partner id."]}, status=400)
        data = es.portfolio(user=request.user, start=start, end=end,
                            partner_id=int(partner) if partner else None)
        for row in data["sites"]:
            row["revenue_by_tenant"] = {k: v for k, v in row["revenue_by_tenant"].items()}
        return Response(plain(data))


# ---------------------------------------------------------------- invoices

class InvoiceLineSerializer(serializers.ModelSerializer):
    amount = serializers.SerializerMethodField()

    class Meta:
        model = InvoiceLine
        fields = ["position", "model", "kind", "usage_period_start", "is_adjustment", "tier_threshold_tokens",
                  "quantity_tokens", "unit_price_per_mtok", "amount", "description"]

    def get_amount(self, obj: InvoiceLine) -> str:
        return str(round_money(obj.amount, obj.invoice.currency))


class InvoiceSerializer(serializers.ModelSerializer):
    tenant_name = serializers.CharField(source="tenant.name", read_only=True)
    total = serializers.SerializerMethodField()
    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta:
        model = Invoice
        fields = ["id", "number", "tenant", "tenant_name", "period_start", "period_end", "currency", "status",
                  "total", "unpriced", "issued_at", "paid_at", "voided_at", "void_reason", "lines", "created_at"]
        read_only_fields = fields

    def get_total(self, obj: Invoice) -> str:
        return str(round_money(obj.total, obj.currency))


class GenerateSerializer(serializers.Serializer):
    tenant = serializers.IntegerField(min_value=1)
    period_start = serializers.DateField(help_text="The first day of the month, e.g. 2026-03-01.")

    def validate_period_start(self, value: dt.date) -> dt.date:
        if not 2000 <= value.year <= 2100:
            raise serializers.ValidationError("Give a month between 2000 and 2100.")
        if value.day != 1:
            raise serializers.ValidationError("An invoice period starts on the first day of a month.")
        return value


class VoidSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=300, default="")


class InvoiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = InvoiceSerializer
    permission_classes = [PartnerManages]
    filterset_fields = ["tenant", "status", "period_start"]

    def get_queryset(self):
        return selectors.invoice_list(user=self.request.user)

    @extend_schema(request=GenerateSerializer, responses={201: InvoiceSerializer})
    @action(detail=False, methods=["post"])
    def generate(self, request: Request) -> Response:
        """Create or rebuild the draft of a tenant's month (owners/operators of the tenant's partner)."""
        require_some_writable_partner(request)
        data = GenerateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = Tenant.objects.of_partner_staff(request.user).filter(pk=data.validated_data["tenant"]).first()
        if tenant is None:
            return Response({"tenant": ["No such tenant among yours."]}, status=400)
        self.check_object_permissions(request, tenant)
        invoice = invoicing.invoice_generate(tenant=tenant, period_start=data.validated_data["period_start"])
        return Response(InvoiceSerializer(invoice).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=InvoiceSerializer)
    @action(detail=True, methods=["post"])
    def issue(self, request: Request, pk: str | None = None) -> Response:
        invoice = invoicing.invoice_issue(invoice=self.get_object(), by=request.user)
        return Response(InvoiceSerializer(invoice).data)

    @extend_schema(request=None, responses=InvoiceSerializer)
    @action(detail=True, methods=["post"])
    def pay(self, request: Request, pk: str | None = None) -> Response:
        invoice = invoicing.invoice_mark_paid(invoice=self.get_object(), by=request.user)
        return Response(InvoiceSerializer(invoice).data)

    @extend_schema(request=VoidSerializer, responses=InvoiceSerializer)
    @action(detail=True, methods=["post"])
    def void(self, request: Request, pk: str | None = None) -> Response:
        invoice = self.get_object()
        data = VoidSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invoice = invoicing.invoice_void(invoice=invoice, by=request.user, reason=data.validated_data["reason"])
        return Response(InvoiceSerializer(invoice).data)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=True, methods=["get"])
    def csv(self, request: Request, pk: str | None = None) -> HttpResponse:
        invoice = self.get_object()
        response = HttpResponse(invoicing.invoice_csv(invoice=invoice), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{invoice.label.replace(" ", "-")}.csv"'
        return response
