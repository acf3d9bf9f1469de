"""Schemathesis fuzzes every operation of `/api/schema/` as each role of the cast: no response is a 500, and
no response carries the other partner's (or tenant's) data. Bounded: the examples per operation and role are
fixed, so the run is the same size every time (the count is asserted and reported in docs/reliability.md)."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode

from tests.matrix import ACTORS, OTHER_SIDE

EXAMPLES_PER_OPERATION = 15
# Every role but anonymous, which the permission matrix already covers (401 everywhere but public routes).
ROLES = [actor for actor in ACTORS if actor != "anonymous"]


def secrets_of_side(world, side: str) -> list[str]:
    """Texts that identify the objects of one side of the world (partner and tenant names, GPU UUIDs)."""
    texts = []
    for key, obj in world.objects.items():
        if key.endswith(f"_{side}"):
            for attr in ("name", "uuid", "hostname"):
                value = getattr(obj, attr, None)
                if isinstance(value, str) and len(value) >= 5:
                    texts.append(value)
    return texts


@pytest.fixture
def in_process_wsgi():
    """The WSGI app, called in the test's transaction: like Django's test client, keep request signals from
    closing the connection that holds the uncommitted test data."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def auth_headers(user) -> dict[str, str]:
    token, _ = Token.objects.get_or_create(user=user)
    return {"Authorization": f"Token {token.key}"}


@pytest.mark.django_db(transaction=False)
@pytest.mark.parametrize("role", ROLES)
def test_fuzzed_api_never_500s_and_never_leaks(role, world, in_process_wsgi):
    # given
    app = in_process_wsgi
    schema = schemathesis.openapi.from_wsgi("/api/schema/", app)
    headers = auth_headers(world.users[role])
    own_side = "a" if OTHER_SIDE[role] == "b" else "b"
    hidden = sorted(set(secrets_of_side(world, OTHER_SIDE[role])) - set(secrets_of_side(world, own_side)))
    assert hidden, "the world must give the fuzzer something to look for"
    operations = [result.ok() for result in schema.get_all_operations()]
    executed = 0
    failures: list[str] = []

    for operation in operations:
        strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE) | operation.as_strategy(
            generation_mode=GenerationMode.NEGATIVE)

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case) -> None:
            nonlocal executed
            executed += 1
            # when
            response = case.call(app=app, headers=headers)
            # then
            body = response.text
            if response.status_code >= 500:
                failures.append(f"{case.as_curl_command()}: {response.status_code} {body[:200]}")
            for text in hidden:
                if text in body:
                    failures.append(f"{case.method} {case.formatted_path} leaked {text!r} to {role}")

        run()

    assert not failures, "\n".join(failures[:20])
    assert executed >= EXAMPLES_PER_OPERATION * len(operations) // 2
    print(f"fuzz[{role}]: {executed} cases over {len(operations)} operations")
