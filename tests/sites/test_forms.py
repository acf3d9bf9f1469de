"""Pages refuse bad input with a message on the form, and never answer 500."""

import pytest
from django.urls import reverse

from sites.models import ServingEndpoint, Site
from tests.matrix.sites import site_payload


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"pue": "0.9"}, "pue", "PUE cannot be below 1.0."),
        ({"electricity_price_per_kwh": "-0.10"}, "electricity_price_per_kwh", "cannot be negative"),
        ({"capex_per_gpu": "-5"}, "capex_per_gpu", "Capex cannot be negative."),
        ({"power_capacity_kw": "0"}, "power_capacity_kw", "greater than 0 kW"),
        ({"time_zone": "Nowhere/City"}, "time_zone", "not a known IANA time zone"),
        ({"contract_date": "not-a-date"}, "contract_date", "Enter a valid date."),
        ({"baseline_engine_versions": "{not json"}, "baseline_engine_versions", "Enter a valid JSON."),
        ({"name": ""}, "name", "This field is required."),
    ],
)
def test_site_form_rejects_bad_input(world, client_for, changes, field, message):
    # given
    client = client_for("operator")
    # when
    response = client.post(reverse("sites:site_create"), {**site_payload(world), **changes})
    # then
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert message.split("'")[0] in response.content.decode()
    assert not Site.objects.filter(name="New Site").exists()


@pytest.mark.django_db
def test_site_form_creates_site_with_default_target_date(world, client_for):
    response = client_for("operator").post(reverse("sites:site_create"), site_payload(world))
    site = Site.objects.get(name="New Site")
    assert response.status_code == 302 and response["Location"] == f"/sites/{site.slug}/"
    assert str(site.target_live_date) == "2026-05-02"


@pytest.mark.django_db
def test_site_form_cannot_target_another_partner(world, client_for):
    payload = {**site_payload(world), "partner": world.partner_b.pk}
    response = client_for("operator").post(reverse("sites:site_create"), payload)
    assert response.status_code == 200
    assert "Select a valid choice" in response.context["form"].errors["partner"][0]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "message"),
    [("ftp://10.0.0.1/metrics", "http:// or https://"), ("not a url", "http:// or https://"),
     ("http://", "http:// or https://")],
)
def test_endpoint_form_rejects_malformed_urls(world, client_for, url, message):
    response = client_for("operator").post(
        reverse("sites:endpoint_create", kwargs={"slug": world.site_a.slug}),
        {"name": "bad", "engine": "vllm", "metrics_url": url, "enabled": "on"},
    )
    assert response.status_code == 200
    assert message in response.context["form"].errors["metrics_url"][0]


@pytest.mark.django_db
def test_endpoint_bearer_token_is_never_rendered_back(world, client_for):
    # given
    client = client_for("operator")
    url = reverse("sites:endpoint_edit", kwargs={"slug": world.site_a.slug, "pk": world.endpoint_a.pk})
    client.post(url, {"name": "vllm-a", "engine": "vllm", "metrics_url": "http://127.0.0.1:8000/metrics",
                      "bearer_token": "tok-XYZ-123", "enabled": "on"})
    # when
    page = client.get(url).content.decode() + client.get(f"/sites/{world.site_a.slug}/").content.decode()
    # then
    assert ServingEndpoint.objects.get(pk=world.endpoint_a.pk).bearer_token == "tok-XYZ-123"
    assert "tok-XYZ-123" not in page


@pytest.mark.django_db
def test_gpu_form_rejects_duplicate_uuid(world, client_for):
    response = client_for("operator").post(
        reverse("sites:gpu_create", kwargs={"slug": world.site_a.slug}),
        {"node": world.node_a.pk, "uuid": world.gpu_a.uuid, "index": 3},
    )
    assert response.status_code == 200
    assert "GPU with this UUID already exists." in response.context["form"].errors["uuid"]


@pytest.mark.django_db
def test_gpu_form_offers_only_this_sites_nodes(world, client_for):
    response = client_for("operator").post(
        reverse("sites:gpu_create", kwargs={"slug": world.site_a.slug}),
        {"node": world.node_b.pk, "uuid": "GPU-x", "index": 0},
    )
    assert "Select a valid choice" in response.context["form"].errors["node"][0]


@pytest.mark.django_db
def test_node_form_rejects_bad_and_duplicate_hostnames(world, client_for):
    url = reverse("sites:node_create", kwargs={"slug": world.site_a.slug})
    bad = client_for("operator").post(url, {"hostname": "-bad host-", "status": "pending"})
    dup = client_for("operator").post(url, {"hostname": "node-a", "status": "pending"})
    assert "Enter a valid hostname." in bad.context["form"].errors["hostname"]
    assert "already registered" in dup.context["form"].non_field_errors()[0]
