"""What hardware a tenant holds, and how metered usage is attributed to tenants. Both keep history:
rows are ended (`ends_at` / `effective_to`), not deleted, so past periods re-meter the same way."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from factory_portal.models import BaseModel
from tenants.models.scoping import TenantScopedQuerySet

validate_label_name = RegexValidator(
    r"^[a-zA-Z_][a-zA-Z0-9_]*$", "A Prometheus label name: letters, digits and _, e.g. model_name or tenant_id."
)


class AllocationQuerySet(TenantScopedQuerySet):
    def active_at(self, when) -> AllocationQuerySet:
        return self.filter(Q(starts_at__lte=when), Q(ends_at__isnull=True) | Q(ends_at__gt=when))


class Allocation(BaseModel):
    """One GPU, MIG device or serving endpoint held by a tenant over [starts_at, ends_at).

    The same GPU or MIG device can never be held by two allocations at once (services check under a row lock;
    on PostgreSQL an exclusion constraint, migration 0002, makes it a database invariant too). A serving
    endpoint may be shared: its traffic is split by attribution rules.
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="allocations")
    gpu = models.ForeignKey(
        "sites.Gpu", on_delete=models.PROTECT, null=True, blank=True, related_name="allocations", verbose_name="GPU"
    )
    mig_device = models.ForeignKey(
        "sites.MigDevice", on_delete=models.PROTECT, null=True, blank=True, related_name="allocations",
        verbose_name="MIG device",
    )
    endpoint = models.ForeignKey(
        "sites.ServingEndpoint", on_delete=models.PROTECT, null=True, blank=True, related_name="allocations",
        verbose_name="serving endpoint",
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    capacity_request = models.ForeignKey(
        "tenants.CapacityRequest", on_delete=models.SET_NULL, null=True, blank=True, related_name="allocations"
    )
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = AllocationQuerySet.as_manager()

    class Meta:
        ordering = ["-starts_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(gpu__isnull=False, mig_device__isnull=True, endpoint__isnull=True)
                    | Q(gpu__isnull=True, mig_device__isnull=False, endpoint__isnull=True)
                    | Q(gpu__isnull=True, mig_device__isnull=True, endpoint__isnull=False)
                ),
                name="%(app_label)s_%(class)s_exactly_one_target",
                violation_error_message="Allocate exactly one of: a GPU, a MIG device, a serving endpoint.",
            ),
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=models.F("starts_at")),
                name="%(app_label)s_%(class)s_ends_after_start",
                violation_error_message="An allocation must end after it starts.",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "starts_at"], name="tenants_alloc_tenant_start")]

    def __str__(self) -> str:
        return f"{self.target_label} → {self.tenant}"

    @property
    def target(self):
        return self.gpu or self.mig_device or self.endpoint

    @property
    def kind(self) -> str:
        return "gpu" if self.gpu_id else "mig" if self.mig_device_id else "endpoint"

    @property
    def target_label(self) -> str:
        if self.gpu_id:
            return f"GPU {self.gpu}"
        if self.mig_device_id:
            return f"MIG {self.mig_device}"
        return f"endpoint {self.endpoint}"

    def is_active(self, when) -> bool:
        return self.starts_at <= when and (self.ends_at is None or self.ends_at > when)


class AttributionRuleQuerySet(TenantScopedQuerySet):
    def effective_at(self, when) -> AttributionRuleQuerySet:
        return self.filter(Q(effective_from__lte=when), Q(effective_to__isnull=True) | Q(effective_to__gt=when))


class AttributionRule(BaseModel):
    """Maps metered usage to a tenant: a whole endpoint (`label` empty), or one (label, value) on it.

    A (label, value) rule wins over a whole-endpoint rule for the same endpoint and time (see `resolve_tenant`).
    """

    endpoint = models.ForeignKey("sites.ServingEndpoint", on_delete=models.PROTECT, related_name="attribution_rules")
    label = models.CharField(
        max_length=100, blank=True, validators=[validate_label_name],
        help_text="Empty: the whole endpoint. Else a label such as model_name, tenant_id (SGLang), team or "
        "api_key_alias (LiteLLM).",
    )
    value = models.CharField(max_length=300, blank=True, help_text="The label's value that means this tenant.")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="attribution_rules")
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = AttributionRuleQuerySet.as_manager()

    class Meta:
        ordering = ["endpoint__name", "label", "value", "-effective_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(label="", value="") | (~Q(label="") & ~Q(value="")),
                name="%(app_label)s_%(class)s_label_needs_value",
                violation_error_message="A label rule needs both the label and its value; a whole-endpoint rule "
                "has neither.",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gt=models.F("effective_from")),
                name="%(app_label)s_%(class)s_to_after_from",
                violation_error_message="A rule must end after it starts.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.matcher} → {self.tenant}"

    @property
    def matcher(self) -> str:
        return f'{{{self.label}="{self.value}"}}' if self.label else "(whole endpoint)"
