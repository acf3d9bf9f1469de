"""The tenant organization, its people and its capacity requests."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from factory_portal.models import BaseModel
from tenants.choices import RequestStatus, TenantRole, TenantStatus
from tenants.models.scoping import TenantScopedQuerySet

validate_mig_profile = RegexValidator(r"^[1-7]g\.\d{1,3}gb$", "Use a MIG profile such as 1g.10gb or 3g.40gb.")


class TenantQuerySet(TenantScopedQuerySet):
    tenant_path = "pk"
    partner_path = "partner"


class Tenant(BaseModel):
    """An AI company that buys inference capacity from one partner."""

    partner = models.ForeignKey("sites.Partner", on_delete=models.PROTECT, related_name="tenants")
    name = models.CharField("organization name", max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    contact_email = models.EmailField()
    email_confirmed_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=TenantStatus.choices, default=TenantStatus.PENDING)
    decision_reason = models.TextField(blank=True, help_text="Why the tenant was approved or rejected.")
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspension_reason = models.TextField(blank=True)
    price_plan = models.ForeignKey(
        "tenants.PricePlan", on_delete=models.PROTECT, null=True, blank=True, related_name="tenants"
    )

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["partner__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "name"],
                name="%(app_label)s_%(class)s_unique_partner_name",
                violation_error_message="An organization with this name is already registered with this partner.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

    @property
    def email_confirmed(self) -> bool:
        return self.email_confirmed_at is not None

    @property
    def rejection_reason(self) -> str:
        return self.decision_reason if self.status == TenantStatus.REJECTED else ""


class TenantMembershipQuerySet(TenantScopedQuerySet):
    pass


class TenantMembership(BaseModel):
    """A person's role in a tenant. A person belongs to one tenant at most, so `/tenant/` is unambiguous."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_memberships")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=TenantRole.choices, default=TenantRole.MEMBER)

    objects = TenantMembershipQuerySet.as_manager()

    class Meta:
        ordering = ["tenant__name", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"],
                name="%(app_label)s_%(class)s_unique_user",
                violation_error_message="This person already belongs to a tenant.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.tenant} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role == TenantRole.ADMIN


class CapacityRequestQuerySet(TenantScopedQuerySet):
    pass


class CapacityRequest(BaseModel):
    """What a tenant asks for: models, whole GPUs or MIG slices, expected volume, from when."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="capacity_requests")
    models_requested = models.JSONField("models", default=list, help_text="Model names, e.g. meta-llama/Llama-3.1-8B.")
    gpu_count = models.PositiveIntegerField(
        "whole GPUs", null=True, blank=True, validators=[MinValueValidator(1, "Ask for at least one GPU.")]
    )
    mig_profile = models.CharField("MIG profile", max_length=16, blank=True, validators=[validate_mig_profile])
    mig_count = models.PositiveIntegerField(
        "MIG slices", null=True, blank=True, validators=[MinValueValidator(1, "Ask for at least one slice.")]
    )
    expected_tokens_per_month = models.BigIntegerField(
        validators=[MinValueValidator(1, "Expected tokens per month must be greater than 0.")]
    )
    start_date = models.DateField()
    notes = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=RequestStatus.choices, default=RequestStatus.PENDING)
    decision_reason = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = CapacityRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(gpu_count__gt=0) & Q(mig_profile="")) | (~Q(mig_profile="") & Q(mig_count__gt=0)
                                                                     & Q(gpu_count__isnull=True)),
                name="%(app_label)s_%(class)s_gpus_or_mig",
                violation_error_message="Ask for either a number of whole GPUs or a MIG profile and slice count.",
            ),
            models.CheckConstraint(
                condition=Q(expected_tokens_per_month__gt=0),
                name="%(app_label)s_%(class)s_tokens_gt_0",
                violation_error_message="Expected tokens per month must be greater than 0.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant}: {self.capacity_label}"

    @property
    def capacity_label(self) -> str:
        if self.gpu_count:
            return f"{self.gpu_count} GPU{'s' if self.gpu_count != 1 else ''}"
        return f"{self.mig_count or 0} × MIG {self.mig_profile}"
