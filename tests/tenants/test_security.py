"""Login lockout (django-axes), CSRF on tenant forms, throttled token endpoints."""

from __future__ import annotations

import pytest
from django.test import Client

from tests import factories

PASSWORD = factories.PASSWORD


@pytest.mark.django_db
def test_login_locks_out_after_repeated_failures():
    # given
    factories.UserFactory(username="alice@example.test")
    client = Client(REMOTE_ADDR="127.0.0.9")
    # when: five wrong passwords, then the right one
    failures = [client.post("/accounts/login/", {"username": "alice@example.test", "password": "wrong"}).status_code
                for _ in range(5)]
    locked = client.post("/accounts/login/", {"username": "alice@example.test", "password": PASSWORD})
    # then: the failures re-render the form; after the limit even the right password is refused
    assert failures[:4] == [200, 200, 200, 200]
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_login_works_before_the_limit():
    # given
    factories.UserFactory(username="bob@example.test")
    client = Client(REMOTE_ADDR="127.0.0.10")
    # when
    for _ in range(2):
        client.post("/accounts/login/", {"username": "bob@example.test", "password": "wrong"})
    response = client.post("/accounts/login/", {"username": "bob@example.test", "password": PASSWORD})
    # then
    assert response.status_code == 302 and "_auth_user_id" in client.session


def test_tenant_forms_require_csrf(world):
    # given
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users["alice"], backend="django.contrib.auth.backends.ModelBackend")
    # when
    response = client.post("/tenant/api-keys/", {"name": "no-token"})
    # then
    assert response.status_code == 403
    assert not world.tenant_a.api_keys.filter(name="no-token").exists()


def test_signup_form_requires_csrf(world):
    # when
    response = Client(enforce_csrf_checks=True).post("/signup/partner-a/", {"org_name": "X"})
    # then
    assert response.status_code == 403


def test_api_key_creation_is_throttled(world, api_client_for, settings):
    # given
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": "2/min"}}
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    client = api_client_for("alice")
    try:
        # when
        statuses = [client.post("/api/v1/api-keys/", {"name": f"k{i}"}, format="json").status_code for i in range(3)]
    finally:
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    # then
    assert statuses == [201, 201, 429]
