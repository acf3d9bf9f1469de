import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from sites.models import Gpu, ServingEndpoint, Site
from sites.services import site_save
from tests import factories


@pytest.mark.django_db
def test_target_live_date_defaults_to_contract_plus_90_days():
    # given
    site = factories.SiteFactory.build(partner=factories.PartnerFactory(), contract_date=dt.date(2026, 3, 1),
                                       target_live_date=None, slug="")
    # when
    site_save(site=site)
    # then
    assert site.target_live_date == dt.date(2026, 5, 30)
    assert site.slug == site.name.lower().replace(" ", "-")


@pytest.mark.django_db
def test_site_slugs_stay_unique_across_partners():
    # given
    first = site_save(site=factories.SiteFactory.build(partner=factories.PartnerFactory(), name="Oslo 1", slug=""))
    # when
    second = site_save(site=factories.SiteFactory.build(partner=factories.PartnerFactory(), name="Oslo 1", slug=""))
    # then
    assert (first.slug, second.slug) == ("oslo-1", "oslo-1-2")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pue", Decimal("0.95"), "PUE cannot be below 1.0."),
        ("power_capacity_kw", Decimal("0"), "Power capacity must be greater than 0 kW."),
        ("electricity_price_per_kwh", Decimal("-0.01"), "The electricity price cannot be negative."),
        ("capex_per_gpu", Decimal("-1"), "Capex cannot be negative."),
        ("opex_per_gpu_hour", Decimal("-1"), "Opex cannot be negative."),
        ("time_zone", "Mars/Olympus_Mons", "is not a known IANA time zone"),
        ("country", "Norway", "two-letter ISO country code"),
        ("currency", "usd", "three-letter ISO currency code"),
    ],
)
def test_site_validation_rejects_bad_facts(field, value, message):
    # given
    site = factories.SiteFactory.build(partner=factories.PartnerFactory(), **{field: value})
    # when
    with pytest.raises(ValidationError) as exc:
        site.full_clean()
    # then
    assert message in " ".join(exc.value.message_dict[field])


@pytest.mark.django_db
def test_database_refuses_pue_below_one_even_without_validation():
    site = factories.SiteFactory()
    with pytest.raises(IntegrityError):
        Site.objects.filter(pk=site.pk).update(pue=Decimal("0.5"))


@pytest.mark.django_db
def test_site_rejects_unknown_engine_in_baseline():
    site = factories.SiteFactory.build(partner=factories.PartnerFactory(), baseline_engine_versions={"ollama": "1"})
    with pytest.raises(ValidationError) as exc:
        site.full_clean()
    assert "Unknown engine(s): ollama." in exc.value.message_dict["baseline_engine_versions"]


@pytest.mark.django_db
def test_gpu_uuid_is_unique():
    gpu = factories.GpuFactory()
    with pytest.raises(IntegrityError):
        Gpu.objects.create(node=gpu.node, uuid=gpu.uuid, index=1)


@pytest.mark.django_db
def test_bearer_token_is_encrypted_at_rest():
    # given
    endpoint = factories.ServingEndpointFactory()
    # when
    endpoint.bearer_token = "s3cret-token"
    endpoint.save()
    # then
    stored = ServingEndpoint.objects.values_list("bearer_token_encrypted", flat=True).get(pk=endpoint.pk)
    assert "s3cret-token" not in stored
    assert ServingEndpoint.objects.get(pk=endpoint.pk).bearer_token == "s3cret-token"


@pytest.mark.django_db
def test_endpoint_node_must_be_at_the_same_site():
    endpoint = factories.ServingEndpointFactory.build(site=factories.SiteFactory(), node=factories.NodeFactory())
    with pytest.raises(ValidationError) as exc:
        endpoint.full_clean()
    assert "same site" in exc.value.message_dict["node"][0]


@pytest.mark.django_db
def test_visible_to_scopes_every_inventory_model(world):
    for user, own, other in [("operator", "a", "b"), ("viewer", "a", "b"), ("outsider", "b", "a")]:
        u = world.users[user]
        for kind in ("site", "node", "gpu", "endpoint"):
            obj = getattr(world, f"{kind}_{own}")
            visible = type(obj).objects.visible_to(u)
            assert obj in visible
            assert getattr(world, f"{kind}_{other}") not in visible
    assert not Site.objects.writable_by(world.users["viewer"]).exists()
