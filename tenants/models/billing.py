"""Attributed usage and invoices (issue 6).

`TenantUsage` is metered usage with its tenant: one row per (engine series, UTC hour), copied from the
hourly `telemetry.UsageRollup` and attributed with the rules in effect at the start of the hour. It is
refreshed idempotently (tenants/metering.py); the raw facts in telemetry are never touched.

An `Invoice` is one tenant's month. Draft invoices are regenerated from usage; issued ones never change
(DESIGN.md §5.4): late usage for an issued month goes to the next invoice as adjustment lines.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from factory_portal.models import BaseModel
from tenants.choices import InvoiceStatus, TokenKind
from tenants.models.scoping import TenantScopedQuerySet


class TenantUsageQuerySet(TenantScopedQuerySet):
    pass


class TenantUsage(models.Model):
    """Tokens of one engine series in one UTC hour, and the tenant they are attributed to (NULL: no rule).

    `tenant` is kept as it was when the hour was billed on an issued invoice: a later rule change re-meters
    only open hours, while late tokens for a billed hour still arrive here and become an adjustment.
    """

    series = models.ForeignKey("telemetry.EngineSeries", on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey("sites.ServingEndpoint", on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=300, blank=True)
    bucket_start = models.DateTimeField()
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, null=True, blank=True,
                               related_name="usage")
    prompt_tokens = models.BigIntegerField(default=0)
    generation_tokens = models.BigIntegerField(default=0)
    metered_at = models.DateTimeField(auto_now=True)

    objects = TenantUsageQuerySet.as_manager()

    class Meta:
        ordering = ["bucket_start", "endpoint_id", "series_id"]
        verbose_name = "tenant usage (hourly)"
        verbose_name_plural = "tenant usage (hourly)"
        constraints = [
            models.UniqueConstraint(
                fields=["series", "bucket_start"], name="%(app_label)s_%(class)s_unique_series_hour",
                violation_error_message="This series already has attributed usage for this hour.",
            )
        ]
        indexes = [models.Index(fields=["tenant", "bucket_start"], name="tenants_usage_tenant_hour"),
                   models.Index(fields=["endpoint", "bucket_start"], name="tenants_usage_endpoint_hour")]

    def __str__(self) -> str:
        return f"{self.series_id} {self.bucket_start:%Y-%m-%d %H:00} → {self.tenant_id or 'unattributed'}"


class InvoiceQuerySet(TenantScopedQuerySet):
    pass


class Invoice(BaseModel):
    """One tenant's month [period_start, period_end) in one currency. `number` is given when issued
    (per partner and year: INV-2026-0001). Totals are the sum of the lines' rounded amounts."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="invoices")
    partner = models.ForeignKey("sites.Partner", on_delete=models.PROTECT, related_name="invoices")
    period_start = models.DateField()
    period_end = models.DateField(help_text="Exclusive: the first day of the next month.")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=8, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    number = models.CharField(max_length=32, blank=True)
    price_plan = models.ForeignKey("tenants.PricePlan", on_delete=models.PROTECT, related_name="invoices")
    total = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    unpriced = models.JSONField(default=list, blank=True,
                                help_text="Models used in the period that the plan does not price (not billed).")
    issued_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=300, blank=True)

    objects = InvoiceQuerySet.as_manager()

    class Meta:
        ordering = ["-period_start", "tenant__name", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "period_start"], condition=~Q(status=InvoiceStatus.VOID),
                name="%(app_label)s_%(class)s_one_live_per_month",
                violation_error_message="This tenant already has an invoice for this month.",
            ),
            models.UniqueConstraint(
                fields=["partner", "number"], condition=~Q(number=""),
                name="%(app_label)s_%(class)s_unique_partner_number",
                violation_error_message="This invoice number is already used.",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gt=models.F("period_start")),
                name="%(app_label)s_%(class)s_period_valid",
                violation_error_message="The period must end after it starts.",
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"draft {self.tenant} {self.period_start:%Y-%m}"

    @property
    def label(self) -> str:
        return self.number or f"Draft {self.period_start:%Y-%m}"

    @property
    def is_draft(self) -> bool:
        return self.status == InvoiceStatus.DRAFT


class InvoiceLine(models.Model):
    """Tokens of one model and kind at one unit price. `amount` = quantity × unit price ÷ 10⁶, rounded once
    (half-even, the currency's minor unit). Adjustment lines bill late usage of `usage_period_start`."""

    invoice = models.ForeignKey("tenants.Invoice", on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField(default=0)
    model = models.CharField(max_length=300)
    kind = models.CharField(max_length=8, choices=TokenKind.choices)
    usage_period_start = models.DateField(help_text="The month the tokens were used in.")
    is_adjustment = models.BooleanField(default=False)
    tier_threshold_tokens = models.BigIntegerField(default=0, help_text="0: the base price; else the tier's start.")
    quantity_tokens = models.BigIntegerField()
    unit_price_per_mtok = models.DecimalField(max_digits=18, decimal_places=6)
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    description = models.CharField(max_length=400)

    class Meta:
        ordering = ["invoice_id", "position"]

    def __str__(self) -> str:
        return self.description

    def save(self, *args, **kwargs) -> None:
        # Belt and braces for DESIGN.md §5.4: services only write lines of drafts.
        if Invoice.objects.filter(pk=self.invoice_id).exclude(status=InvoiceStatus.DRAFT).exists():
            raise ValidationError("An issued invoice never changes.")
        super().save(*args, **kwargs)
