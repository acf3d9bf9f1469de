import pytest
from django.urls import reverse

from tests.factories import PASSWORD


@pytest.mark.django_db
def test_token_login_returns_a_token_that_authenticates(world, client):
    # when
    response = client.post(reverse("api-token"), {"username": "viewer", "password": PASSWORD})
    token = response.json()["token"]
    # then
    listing = client.get(reverse("site-list"), HTTP_AUTHORIZATION=f"Token {token}")
    assert listing.status_code == 200
    assert [s["slug"] for s in listing.json()["results"]] == ["site-a"]


@pytest.mark.django_db
def test_token_login_with_wrong_password_is_a_400_with_a_message(world, client):
    response = client.post(reverse("api-token"), {"username": "viewer", "password": "nope"})
    assert response.status_code == 400
    assert "Unable to log in" in response.json()["non_field_errors"][0]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"pue": "0.99"}, "pue", "greater than or equal to 1.00"),
        ({"electricity_price_per_kwh": "-1"}, "electricity_price_per_kwh", "greater than or equal to 0"),
        ({"time_zone": "Nope/Nope"}, "time_zone", "IANA"),
        ({"baseline_engine_versions": {"ollama": "1"}}, "baseline_engine_versions", "Unknown engine"),
        ({"pue": "abc"}, "pue", "A valid number is required."),
    ],
)
def test_site_api_rejects_bad_input_with_messages(world, api_client_for, payload, field, message):
    response = api_client_for("operator").patch(f"/api/v1/sites/{world.site_a.pk}/", payload, format="json")
    assert response.status_code == 400
    assert message in " ".join(response.json()[field])


@pytest.mark.django_db
def test_endpoint_api_never_returns_the_bearer_token(world, api_client_for):
    # given
    client = api_client_for("operator")
    # when
    created = client.post("/api/v1/endpoints/", {
        "site": world.site_a.pk, "name": "nim-1", "engine": "nim", "metrics_url": "https://10.1.2.3:8000/metrics",
        "bearer_token": "very-secret"}, format="json")
    detail = client.get(f"/api/v1/endpoints/{created.json()['id']}/")
    # then
    assert created.status_code == 201
    assert "very-secret" not in created.content.decode() + detail.content.decode()
    assert detail.json()["has_bearer_token"] is True


@pytest.mark.django_db
def test_endpoint_api_rejects_malformed_url_and_foreign_node(world, api_client_for):
    response = api_client_for("operator").post("/api/v1/endpoints/", {
        "site": world.site_a.pk, "node": world.node_b.pk, "name": "x", "metrics_url": "gopher://x"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert "object does not exist" in body["node"][0]
    assert "http:// or https://" in body["metrics_url"][0]


@pytest.mark.django_db
def test_gpu_api_rejects_duplicate_uuid(world, api_client_for):
    response = api_client_for("operator").post(
        "/api/v1/gpus/", {"node": world.node_a.pk, "uuid": world.gpu_a.uuid}, format="json")
    assert response.status_code == 400
    assert "already exists" in response.json()["uuid"][0]


@pytest.mark.django_db
def test_viewer_cannot_move_a_node_and_owner_cannot_move_it_to_another_partner(world, api_client_for):
    viewer = api_client_for("viewer").patch(f"/api/v1/nodes/{world.node_a.pk}/", {"site": world.site_a.pk},
                                            format="json")
    owner = api_client_for("operator").patch(f"/api/v1/nodes/{world.node_a.pk}/", {"site": world.site_b.pk},
                                             format="json")
    assert viewer.status_code == 403
    assert owner.status_code == 400


@pytest.mark.django_db
def test_list_query_counts_do_not_grow_with_rows(world, api_client_for):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests import factories

    client = api_client_for("operator")
    routes = ["/api/v1/sites/", "/api/v1/nodes/", "/api/v1/gpus/", "/api/v1/endpoints/", "/api/v1/partners/"]

    def counts() -> list[int]:
        result = []
        for route in routes:
            with CaptureQueriesContext(connection) as ctx:
                assert client.get(route).status_code == 200
            result.append(len(ctx))
        return result

    # given
    before = counts()
    # when
    for _ in range(10):
        node = factories.NodeFactory(site=factories.SiteFactory(partner=world.partner_a))
        factories.MigDeviceFactory(gpu=factories.GpuFactory(node=node))
        factories.ServingEndpointFactory(site=node.site, node=node)
    # then
    assert counts() == before
    assert max(before) <= 8


@pytest.mark.django_db
def test_token_login_with_an_absurd_username_is_a_400_not_a_500(world, client):
    # found by the fuzzer: a 300-character username overflowed the lockout log's column
    response = client.post(reverse("api-token"), {"username": "x" * 300, "password": "-39"})
    assert response.status_code == 400
    assert "no more than 150 characters" in response.json()["username"][0]
