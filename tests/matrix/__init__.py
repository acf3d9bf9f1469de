"""The permission matrix: one Case per (route, method), with the status each actor of the cast gets.

Every app adds a module here exposing CASES. tests/test_permission_matrix.py runs them all and fails
when a named route of the URL conf has no case, or a case leaves an actor out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ACTORS = ["anonymous", "operator", "viewer", "outsider", "alice", "bob", "charlie"]
TENANT_ACTORS = ("alice", "bob", "charlie")
# The side of the world an actor must never see: partner A's staff and tenant A's people (alice admin, bob
# member) never see the `*_b` objects (partner B, its inventory, tenant B); partner B's and tenant B's never `*_a`.
OTHER_SIDE = {"operator": "b", "viewer": "b", "outsider": "a", "alice": "b", "bob": "b", "charlie": "a"}

# Statuses that say "not for you": the matrix checks the exact one.
LOGIN = 302  # a page redirects an anonymous visitor to the login page


@dataclass(frozen=True)
class Case:
    route: str
    expect: dict[str, int]
    method: str = "get"
    kwargs: Callable[[Any], dict] = lambda w: {}
    data: Callable[[Any], dict] | None = None
    api: bool = False
    query: str = ""
    id: str = ""
    # hides(world, other) → texts that must not appear for an actor whose "other side" is `other`
    # ("a" or "b": the objects of the partner (or tenant) the actor does not belong to).
    hides: Callable[[Any, str], list[str]] = field(default=lambda w, other: [])

    @property
    def label(self) -> str:
        return self.id or f"{self.method.upper()} {self.route}"


def tenant_people(status: int) -> dict[str, int]:
    return {actor: status for actor in TENANT_ACTORS}


def reads(route: str, *, own: int = 200, other: int = 404, anonymous: int | None = None, api: bool = False,
          kwargs: Callable[[Any], dict] = lambda w: {}, **extra: Any) -> Case:
    """A read of partner A's inventory object: members of A read it, partner B gets `other`, and tenant people —
    who are no partner's members — get 404 like any other outsider (unless `extra` says otherwise)."""
    anon = anonymous if anonymous is not None else (401 if api else LOGIN)
    return Case(route=route, api=api, kwargs=kwargs,
                expect={"anonymous": anon, "operator": own, "viewer": own, "outsider": other,
                        **tenant_people(404), **extra})


def writes(route: str, *, method: str, ok: int, data: Callable[[Any], dict] | None = None, other: int = 404,
           anonymous: int | None = None, api: bool = False, kwargs: Callable[[Any], dict] = lambda w: {},
           **extra: Any) -> Case:
    """A write to partner A's inventory object: the owner may, the viewer gets 403, partner B and tenant people
    get `other` (the object is invisible to them)."""
    anon = anonymous if anonymous is not None else (401 if api else LOGIN)
    return Case(route=route, method=method, api=api, kwargs=kwargs, data=data,
                expect={"anonymous": anon, "operator": ok, "viewer": 403, "outsider": other,
                        **tenant_people(other), **extra})
