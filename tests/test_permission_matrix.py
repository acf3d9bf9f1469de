"""Runs every case of tests/matrix/ for every actor, and fails for a named route without a case."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

import tests.matrix as matrix_pkg
from tests.matrix import ACTORS, OTHER_SIDE, Case

# Routes outside the matrix, and why.
EXEMPT_NAMESPACES = {"admin"}  # Django admin: staff only, Django's own permission system


def _load_cases() -> list[Case]:
    cases: list[Case] = []
    for module in pkgutil.iter_modules(matrix_pkg.__path__):
        cases += importlib.import_module(f"tests.matrix.{module.name}").CASES
    return cases


CASES = _load_cases()


def _route_names(patterns, namespace: str = "") -> set[str]:
    names: set[str] = set()
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = namespace
            if p.namespace:
                ns = f"{namespace}{p.namespace}:"
            if p.namespace in EXEMPT_NAMESPACES:
                continue
            names |= _route_names(p.url_patterns, ns)
        elif isinstance(p, URLPattern) and p.name:
            names.add(f"{namespace}{p.name}")
    return names


def test_every_named_route_has_a_case() -> None:
    covered = {case.route for case in CASES}
    missing = sorted(_route_names(get_resolver().url_patterns) - covered)
    assert not missing, f"routes without a permission-matrix case: {missing}"


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_case_names_every_actor(case: Case) -> None:
    assert sorted(case.expect) == sorted(ACTORS), f"{case.label}: give an expected status for every actor"


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_matrix(case: Case, actor: str, world, client_for, api_client_for) -> None:
    # given
    url = reverse(case.route, kwargs=case.kwargs(world)) + case.query
    username = None if actor == "anonymous" else actor
    client = api_client_for(username) if case.api else client_for(username)
    data = case.data(world) if case.data else None
    # when
    if case.api:
        response = getattr(client, case.method)(url, data, format="json")
    else:
        response = getattr(client, case.method)(url, data) if data is not None else getattr(client, case.method)(url)
    # then
    assert response.status_code == case.expect[actor], (
        f"{case.label} as {actor}: {response.status_code} {getattr(response, 'content', b'')[:300]!r}"
    )
    if response.status_code == 200 and actor in OTHER_SIDE:
        body = response.content.decode(errors="replace")
        for text in case.hides(world, OTHER_SIDE[actor]):
            assert text not in body, f"{case.label} as {actor} shows {text!r}"
