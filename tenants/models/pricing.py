"""Price plans: what a tenant pays per million tokens, per model. Issue 6 adds volume tiers (a PriceTier
under PriceRate) and invoices; the rate rows stay the base prices."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from factory_portal.models import BaseModel
from tenants.models.scoping import TenantScopedQuerySet, partner_ids_of, tenant_ids_of

ANY_MODEL = "*"


class PricePlanQuerySet(TenantScopedQuerySet):
    partner_path = "partner"

    def visible_to(self, user) -> PricePlanQuerySet:
        # A plan has no tenant of its own: tenants see the plan they are on, partner staff see their partner's.
        from tenants.models.scoping import api_key_tenant_id

        if not user.is_authenticated:
            return self.none()
        key_tenant = api_key_tenant_id(user)
        if key_tenant is not None:
            from tenants.models.tenants import Tenant

            return self.filter(pk__in=Tenant.objects.filter(pk=key_tenant).values("price_plan_id"))
        if user.is_superuser:
            return self.all()
        from tenants.models.tenants import Tenant

        own_plans = Tenant.objects.filter(pk__in=tenant_ids_of(user)).values("price_plan_id")
        return self.filter(Q(partner__in=partner_ids_of(user)) | Q(pk__in=own_plans))


class PricePlan(BaseModel):
    """A partner's price list, effective from a date; assigned to tenants."""

    partner = models.ForeignKey("sites.Partner", on_delete=models.PROTECT, related_name="price_plans")
    name = models.CharField(max_length=120)
    currency = models.CharField(
        max_length=3, default="USD",
        validators=[RegexValidator(r"^[A-Z]{3}$", "Use the three-letter ISO currency code, e.g. USD.")],
    )
    effective_from = models.DateField()
    effective_to = models.DateField(null=True, blank=True)
    notes = models.TextField(blank=True)

    objects = PricePlanQuerySet.as_manager()

    class Meta:
        ordering = ["partner__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "name"],
                name="%(app_label)s_%(class)s_unique_partner_name",
                violation_error_message="This partner already has a price plan with this name.",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gt=models.F("effective_from")),
                name="%(app_label)s_%(class)s_to_after_from",
                violation_error_message="A price plan must end after it starts.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"

    def rate_for(self, model: str) -> PriceRate | None:
        """The model's own rate, else the plan's `*` rate, else None (unpriced)."""
        rates = {r.model: r for r in self.rates.all()}
        return rates.get(model) or rates.get(ANY_MODEL)


class PriceRate(BaseModel):
    """Prices per million input and output tokens of one model (`*` = any model without its own rate)."""

    plan = models.ForeignKey("tenants.PricePlan", on_delete=models.CASCADE, related_name="rates")
    model = models.CharField(max_length=200, help_text="The served model name, or * for every other model.")
    input_price_per_mtok = models.DecimalField(
        "input price per million tokens", max_digits=18, decimal_places=6,
        validators=[MinValueValidator(Decimal("0"), "Prices cannot be negative.")],
    )
    output_price_per_mtok = models.DecimalField(
        "output price per million tokens", max_digits=18, decimal_places=6,
        validators=[MinValueValidator(Decimal("0"), "Prices cannot be negative.")],
    )

    class Meta:
        ordering = ["plan", "model"]
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "model"],
                name="%(app_label)s_%(class)s_unique_plan_model",
                violation_error_message="This plan already prices this model.",
            ),
            models.CheckConstraint(
                condition=Q(input_price_per_mtok__gte=0) & Q(output_price_per_mtok__gte=0),
                name="%(app_label)s_%(class)s_prices_gte_0",
                violation_error_message="Prices cannot be negative.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model}: in {self.input_price_per_mtok} / out {self.output_price_per_mtok} per Mtok"


class PriceTier(BaseModel):
    """A volume tier of a rate: once a tenant has used `threshold_tokens` tokens of one kind (input or output)
    of this model in a calendar month (UTC), the tokens beyond are priced here. Graduated, like tax brackets:
    the base rate prices tokens 0..first threshold, each tier from its threshold to the next one."""

    rate = models.ForeignKey("tenants.PriceRate", on_delete=models.CASCADE, related_name="tiers")
    threshold_tokens = models.BigIntegerField(
        validators=[MinValueValidator(1, "A tier starts after at least one token.")],
        help_text="Tokens of the month (per kind) after which this tier's prices apply, e.g. 1000000000.",
    )
    input_price_per_mtok = models.DecimalField(
        "input price per million tokens", max_digits=18, decimal_places=6,
        validators=[MinValueValidator(Decimal("0"), "Prices cannot be negative.")],
    )
    output_price_per_mtok = models.DecimalField(
        "output price per million tokens", max_digits=18, decimal_places=6,
        validators=[MinValueValidator(Decimal("0"), "Prices cannot be negative.")],
    )

    class Meta:
        ordering = ["rate", "threshold_tokens"]
        constraints = [
            models.UniqueConstraint(
                fields=["rate", "threshold_tokens"],
                name="%(app_label)s_%(class)s_unique_rate_threshold",
                violation_error_message="This rate already has a tier starting there.",
            ),
            models.CheckConstraint(
                condition=Q(threshold_tokens__gt=0) & Q(input_price_per_mtok__gte=0)
                & Q(output_price_per_mtok__gte=0),
                name="%(app_label)s_%(class)s_valid",
                violation_error_message="A tier starts after at least one token and prices cannot be negative.",
            ),
        ]

    def __str__(self) -> str:
        return (f"after {self.threshold_tokens} tokens: in {self.input_price_per_mtok} / "
                f"out {self.output_price_per_mtok}")
