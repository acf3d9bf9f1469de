"""Partners, their staff, sites and the inventory on them."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator, URLValidator
from django.db import models
from django.db.models import Q

from factory_portal.crypto import decrypt_secret, encrypt_secret
from factory_portal.models import BaseModel
from sites.choices import (
    WRITE_ROLES,
    EndpointHealth,
    Engine,
    GpuStatus,
    MilestoneKind,
    NodeStatus,
    PartnerRole,
    SiteStatus,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

DEPLOYMENT_PLAN_DAYS = 90
validate_http_url = URLValidator(schemes=["http", "https"], message="Enter a valid http:// or https:// URL.")


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known IANA time zone (e.g. Europe/Oslo).")


class PartnerScopedQuerySet(models.QuerySet):
    """`visible_to(user)` is the single place partner data is scoped (DESIGN.md §5.6).

    Subclasses name the path from the model to its Partner in `partner_path`.
    """

    partner_path = "partner"

    def _partners(self, user: AbstractBaseUser | AnonymousUser, roles: tuple[str, ...] | None) -> models.QuerySet:
        memberships = Membership.objects.filter(user_id=user.pk)
        if roles is not None:
            memberships = memberships.filter(role__in=roles)
        return memberships.values("partner_id")

    def visible_to(self, user: AbstractBaseUser | AnonymousUser) -> PartnerScopedQuerySet:
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(**{f"{self.partner_path}__in": self._partners(user, None)})

    def writable_by(self, user: AbstractBaseUser | AnonymousUser) -> PartnerScopedQuerySet:
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(**{f"{self.partner_path}__in": self._partners(user, WRITE_ROLES)})


class PartnerQuerySet(PartnerScopedQuerySet):
    partner_path = "pk"


class Partner(BaseModel):
    """A capital partner: owns sites and sells their capacity to tenants."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)

    objects = PartnerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(BaseModel):
    """A user's role at a partner: owners and operators write, viewers read."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="partner_memberships")
    partner = models.ForeignKey("sites.Partner", on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=PartnerRole.choices, default=PartnerRole.VIEWER)

    class Meta:
        ordering = ["partner__name", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "partner"],
                name="%(app_label)s_%(class)s_unique_user_partner",
                violation_error_message="This user already has a role at this partner.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.partner} ({self.role})"

    @property
    def can_write(self) -> bool:
        return self.role in WRITE_ROLES


class SiteQuerySet(PartnerScopedQuerySet):
    partner_path = "partner"


class Site(BaseModel):
    """A GPU site: where it is, what power it has, what it costs, what software it must run."""

    partner = models.ForeignKey("sites.Partner", on_delete=models.PROTECT, related_name="sites")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    country = models.CharField(
        max_length=2,
        validators=[RegexValidator(r"^[A-Z]{2}$", "Use the two-letter ISO country code, e.g. NO.")],
        help_text="ISO 3166-1 alpha-2, e.g. NO, US, DE.",
    )
    city = models.CharField(max_length=120)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    status = models.CharField(max_length=16, choices=SiteStatus.choices, default=SiteStatus.PLANNED)
    contract_date = models.DateField()
    target_live_date = models.DateField(blank=True, help_text="Defaults to the contract date + 90 days.")
    power_capacity_kw = models.DecimalField(
        "contracted power capacity (kW)",
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01"), "Power capacity must be greater than 0 kW.")],
    )
    pue = models.DecimalField(
        "PUE",
        max_digits=4,
        decimal_places=2,
        default=Decimal("1.30"),
        validators=[MinValueValidator(Decimal("1.00"), "PUE cannot be below 1.0.")],
        help_text="Facility energy ÷ IT energy; 1.0 or more.",
    )
    electricity_price_per_kwh = models.DecimalField(
        max_digits=10,
        decimal_places=5,
        validators=[MinValueValidator(Decimal("0"), "The electricity price cannot be negative.")],
    )
    currency = models.CharField(
        max_length=3,
        default="USD",
        validators=[RegexValidator(r"^[A-Z]{3}$", "Use the three-letter ISO currency code, e.g. USD.")],
    )
    capex_per_gpu = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0"), "Capex cannot be negative.")],
    )
    amortization_months = models.PositiveIntegerField(
        default=48, validators=[MinValueValidator(1, "Amortization needs at least one month.")]
    )
    opex_per_gpu_hour = models.DecimalField(
        max_digits=10,
        decimal_places=5,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"), "Opex cannot be negative.")],
    )
    utilization_target_pct = models.PositiveSmallIntegerField(
        default=70, validators=[MinValueValidator(1, "The utilization target must be at least 1%.")]
    )
    gpu_poll_interval_s = models.PositiveIntegerField(
        "GPU poll interval (s)", default=10, validators=[MinValueValidator(1, "Poll at most once a second.")]
    )
    # The standard software stack every node and endpoint at the site should run.
    baseline_driver_version = models.CharField("driver version", max_length=32, blank=True)
    baseline_cuda_version = models.CharField("CUDA version", max_length=32, blank=True)
    baseline_trtllm_version = models.CharField("TensorRT-LLM version", max_length=32, blank=True)
    baseline_nemo_version = models.CharField("NeMo version", max_length=32, blank=True)
    baseline_engine_versions = models.JSONField(
        "serving-engine versions",
        default=dict,
        blank=True,
        help_text='Engine → version, e.g. {"vllm": "0.8.5", "sglang": "0.4.6"}.',
    )

    objects = SiteQuerySet.as_manager()

    class Meta:
        ordering = ["partner__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "name"],
                name="%(app_label)s_%(class)s_unique_partner_name",
                violation_error_message="This partner already has a site with this name.",
            ),
            models.CheckConstraint(
                condition=Q(pue__gte=1), name="%(app_label)s_%(class)s_pue_gte_1",
                violation_error_message="PUE cannot be below 1.0.",
            ),
            models.CheckConstraint(
                condition=Q(power_capacity_kw__gt=0), name="%(app_label)s_%(class)s_power_gt_0",
                violation_error_message="Power capacity must be greater than 0 kW.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        if not isinstance(self.baseline_engine_versions, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.baseline_engine_versions.items()
        ):
            raise ValidationError({"baseline_engine_versions": 'Give an object of engine → version strings.'})
        unknown = set(self.baseline_engine_versions) - set(Engine.values)
        if unknown:
            raise ValidationError({"baseline_engine_versions": f"Unknown engine(s): {', '.join(sorted(unknown))}."})
        if self.contract_date and self.target_live_date and self.target_live_date < self.contract_date:
            raise ValidationError({"target_live_date": "The target live date cannot be before the contract date."})

    def save(self, *args, **kwargs) -> None:
        if self.target_live_date is None and self.contract_date is not None:
            self.target_live_date = self.contract_date + dt.timedelta(days=DEPLOYMENT_PLAN_DAYS)
        super().save(*args, **kwargs)


class NodeQuerySet(PartnerScopedQuerySet):
    partner_path = "site__partner"


class Node(BaseModel):
    """A GPU server at a site. Its Celery worker consumes queue `node.<hostname>`."""

    site = models.ForeignKey("sites.Site", on_delete=models.PROTECT, related_name="nodes")
    hostname = models.CharField(
        max_length=253,
        validators=[RegexValidator(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$", "Enter a valid hostname.")],
    )
    status = models.CharField(max_length=16, choices=NodeStatus.choices, default=NodeStatus.PENDING)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    driver_version = models.CharField(max_length=32, blank=True)
    cuda_driver_version = models.CharField(max_length=32, blank=True)
    agent_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    # Seconds the node's clock was ahead (+) or behind (−) the server's at its last report; its readings are
    # re-timed when this exceeds NODE_CLOCK_SKEW_TOLERANCE_S (telemetry/clock.py). Null: never measured.
    clock_offset_s = models.FloatField(null=True, blank=True, editable=False)

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["site__name", "hostname"]
        constraints = [
            models.UniqueConstraint(
                fields=["hostname"],
                name="%(app_label)s_%(class)s_unique_hostname",
                violation_error_message="A node with this hostname is already registered.",
            )
        ]

    def __str__(self) -> str:
        return self.hostname


class GpuQuerySet(PartnerScopedQuerySet):
    partner_path = "node__site__partner"


class Gpu(BaseModel):
    """One physical GPU, keyed by its NVML UUID."""

    node = models.ForeignKey("sites.Node", on_delete=models.PROTECT, related_name="gpus")
    uuid = models.CharField("UUID", max_length=64, unique=True)
    index = models.PositiveSmallIntegerField(default=0)
    name = models.CharField(max_length=120, blank=True)
    memory_total_bytes = models.BigIntegerField(null=True, blank=True)
    serial = models.CharField(max_length=64, blank=True)
    pci_bus_id = models.CharField("PCI bus id", max_length=32, blank=True)
    driver_version = models.CharField(max_length=32, blank=True)
    cuda_driver_version = models.CharField(max_length=32, blank=True)
    mig_mode = models.BooleanField("MIG mode", null=True, blank=True)
    status = models.CharField(max_length=16, choices=GpuStatus.choices, default=GpuStatus.OK)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # The figures of the GPU's newest reading (the report that set `last_seen_at`), kept by the ingest in the same
    # UPDATE so the live cards read one row per GPU of the site instead of the installation's raw samples of the
    # window. NULL = the reading lacked the field (not supported), never 0; an older report never rolls them back.
    last_util_pct = models.SmallIntegerField(null=True, blank=True)
    last_power_w = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    simulated = models.BooleanField(default=False, help_text="Readings come from the demo simulator.")

    objects = GpuQuerySet.as_manager()

    class Meta:
        ordering = ["node__hostname", "index"]
        verbose_name = "GPU"

    def __str__(self) -> str:
        return f"{self.node.hostname}/gpu{self.index}" if self.node_id else self.uuid


class MigDeviceQuerySet(PartnerScopedQuerySet):
    partner_path = "gpu__node__site__partner"


class MigDevice(BaseModel):
    """A MIG slice of a GPU; `compute_slices` (of 7) weights it in allocation ratios."""

    gpu = models.ForeignKey("sites.Gpu", on_delete=models.CASCADE, related_name="mig_devices")
    uuid = models.CharField("UUID", max_length=64, unique=True)
    profile = models.CharField(max_length=32, help_text="e.g. 1g.10gb, 3g.40gb")
    memory_total_bytes = models.BigIntegerField(null=True, blank=True)
    compute_slices = models.PositiveSmallIntegerField(default=1)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    objects = MigDeviceQuerySet.as_manager()

    class Meta:
        ordering = ["gpu__uuid", "uuid"]
        verbose_name = "MIG device"

    def __str__(self) -> str:
        return f"{self.gpu} {self.profile}"


class ServingEndpointQuerySet(PartnerScopedQuerySet):
    partner_path = "site__partner"


class ServingEndpoint(BaseModel):
    """An inference server whose Prometheus `/metrics` page the portal scrapes."""

    site = models.ForeignKey("sites.Site", on_delete=models.PROTECT, related_name="endpoints")
    node = models.ForeignKey(
        "sites.Node", on_delete=models.SET_NULL, null=True, blank=True, related_name="endpoints"
    )
    name = models.CharField(max_length=120)
    engine = models.CharField(max_length=16, choices=Engine.choices, default=Engine.AUTO)
    metrics_url = models.CharField("metrics URL", max_length=500, validators=[validate_http_url])
    bearer_token_encrypted = models.TextField(blank=True, editable=False)
    served_model = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    health = models.CharField(max_length=16, choices=EndpointHealth.choices, default=EndpointHealth.UNKNOWN)
    last_error = models.TextField(blank=True)
    last_scraped_at = models.DateTimeField(null=True, blank=True)
    detected_engine = models.CharField(max_length=16, choices=Engine.choices, blank=True)
    engine_version = models.CharField(max_length=32, blank=True)
    simulated = models.BooleanField(default=False, help_text="Served by the demo's engine emulator.")

    objects = ServingEndpointQuerySet.as_manager()

    class Meta:
        ordering = ["site__name", "name"]
        verbose_name = "serving endpoint"
        constraints = [
            models.UniqueConstraint(
                fields=["site", "name"],
                name="%(app_label)s_%(class)s_unique_site_name",
                violation_error_message="This site already has an endpoint with this name.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def bearer_token(self) -> str:
        return decrypt_secret(self.bearer_token_encrypted)

    @bearer_token.setter
    def bearer_token(self, value: str) -> None:
        self.bearer_token_encrypted = encrypt_secret(value)

    @property
    def has_bearer_token(self) -> bool:
        return bool(self.bearer_token_encrypted)

    def clean(self) -> None:
        super().clean()
        if self.node_id and self.site_id and self.node.site_id != self.site_id:
            raise ValidationError({"node": "The node must be at the same site as the endpoint."})


class SiteMilestoneQuerySet(PartnerScopedQuerySet):
    partner_path = "site__partner"


class SiteMilestone(BaseModel):
    """One step of a site's build-out plan: when it should happen and when it did (see sites/buildout.py)."""

    site = models.ForeignKey("sites.Site", on_delete=models.CASCADE, related_name="milestones")
    kind = models.CharField(max_length=32, choices=MilestoneKind.choices)
    name = models.CharField(max_length=120)
    planned_date = models.DateField()
    done_date = models.DateField(null=True, blank=True, help_text="Leave empty while the step is open.")

    objects = SiteMilestoneQuerySet.as_manager()

    class Meta:
        ordering = ["site__name", "planned_date", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "kind"],
                name="%(app_label)s_%(class)s_unique_site_kind",
                violation_error_message="This site already has a milestone of this kind.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.site.name}: {self.name}" if self.site_id else self.name

    def clean(self) -> None:
        super().clean()
        if self.site_id and self.planned_date and self.planned_date < self.site.contract_date:
            raise ValidationError({"planned_date": "A milestone cannot be planned before the contract date."})
        if self.site_id and self.done_date and self.done_date < self.site.contract_date:
            raise ValidationError({"done_date": "A milestone cannot be done before the contract date."})
