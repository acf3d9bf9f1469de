"""factory_boy factories for the whole suite; apps add theirs below their section."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from sites.choices import PartnerRole
from sites.models import Gpu, Membership, MigDevice, Node, Partner, ServingEndpoint, Site

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.test")
    password = factory.django.Password(PASSWORD)


class PartnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Partner

    name = factory.Sequence(lambda n: f"Partner {n}")
    slug = factory.Sequence(lambda n: f"partner-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    partner = factory.SubFactory(PartnerFactory)
    role = PartnerRole.OWNER


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    partner = factory.SubFactory(PartnerFactory)
    name = factory.Sequence(lambda n: f"Site {n}")
    slug = factory.Sequence(lambda n: f"site-{n}")
    country = "NO"
    city = "Oslo"
    time_zone = "Europe/Oslo"
    contract_date = dt.date(2026, 1, 5)
    power_capacity_kw = Decimal("2000")
    pue = Decimal("1.20")
    electricity_price_per_kwh = Decimal("0.08")
    currency = "USD"
    capex_per_gpu = Decimal("30000")
    amortization_months = 48
    opex_per_gpu_hour = Decimal("0.10")


class NodeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Node

    site = factory.SubFactory(SiteFactory)
    hostname = factory.Sequence(lambda n: f"gpu-node-{n:03d}")


class GpuFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Gpu

    node = factory.SubFactory(NodeFactory)
    uuid = factory.LazyFunction(lambda: f"GPU-{uuid.uuid4()}")
    index = factory.Sequence(lambda n: n % 8)
    name = "NVIDIA H100 80GB HBM3"
    memory_total_bytes = 85520809984


class MigDeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MigDevice

    gpu = factory.SubFactory(GpuFactory, mig_mode=True)
    uuid = factory.LazyFunction(lambda: f"MIG-{uuid.uuid4()}")
    profile = "1g.10gb"
    compute_slices = 1


class ServingEndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServingEndpoint

    site = factory.SubFactory(SiteFactory)
    name = factory.Sequence(lambda n: f"endpoint-{n}")
    engine = "vllm"
    metrics_url = factory.Sequence(lambda n: f"http://127.0.0.1:{9000 + n}/metrics")


# ---------------------------------------------------------------- tenants

from django.utils import timezone  # noqa: E402

from tenants.choices import TenantRole, TenantStatus  # noqa: E402
from tenants.models import (  # noqa: E402
    Allocation,
    AttributionRule,
    CapacityRequest,
    PricePlan,
    PriceRate,
    Tenant,
    TenantMembership,
)


class PricePlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PricePlan

    partner = factory.SubFactory(PartnerFactory)
    name = factory.Sequence(lambda n: f"Plan {n}")
    currency = "USD"
    effective_from = dt.date(2026, 1, 1)


class PriceRateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PriceRate

    plan = factory.SubFactory(PricePlanFactory)
    model = "*"
    input_price_per_mtok = Decimal("0.20")
    output_price_per_mtok = Decimal("0.60")


class TenantFactory(factory.django.DjangoModelFactory):
    """An approved tenant with a confirmed email (the state most tests start from)."""

    class Meta:
        model = Tenant

    partner = factory.SubFactory(PartnerFactory)
    name = factory.Sequence(lambda n: f"Tenant {n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")
    contact_email = factory.LazyAttribute(lambda o: f"admin@{o.slug}.example.test")
    email_confirmed_at = factory.LazyFunction(timezone.now)
    status = TenantStatus.APPROVED


class TenantMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TenantMembership

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    role = TenantRole.ADMIN


class CapacityRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CapacityRequest

    tenant = factory.SubFactory(TenantFactory)
    models_requested = factory.LazyFunction(lambda: ["meta-llama/Llama-3.1-8B-Instruct"])
    gpu_count = 2
    expected_tokens_per_month = 5_000_000_000
    start_date = factory.LazyFunction(lambda: timezone.localdate() + dt.timedelta(days=7))


class AllocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Allocation

    tenant = factory.SubFactory(TenantFactory)
    starts_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=1))


class AttributionRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AttributionRule

    tenant = factory.SubFactory(TenantFactory)
    effective_from = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=1))
