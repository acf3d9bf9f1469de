"""Writes to partner inventory. Callers (views, API, tasks) check the role first via selectors."""

from __future__ import annotations

from django.db import transaction
from django.utils.text import slugify

from factory_portal.crypto import hash_token, new_token
from sites.buildout import milestone_plan_create
from sites.models import Node, Partner, ServingEndpoint, Site


def unique_site_slug(*, name: str, exclude_pk: int | None = None) -> str:
    base = slugify(name)[:70] or "site"
    slug, n = base, 2
    qs = Site.objects.all() if exclude_pk is None else Site.objects.exclude(pk=exclude_pk)
    while qs.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def partner_create(*, name: str) -> Partner:
    base = slugify(name)[:70] or "partner"
    slug, n = base, 2
    while Partner.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return Partner.objects.create(name=name, slug=slug)


@transaction.atomic
def site_save(*, site: Site) -> Site:
    """Create or update a validated site, giving a new one a slug that is unique across partners."""
    created = site.pk is None
    if not site.slug:
        site.slug = unique_site_slug(name=site.name, exclude_pk=site.pk)
    site.full_clean()
    site.save()
    if created:
        milestone_plan_create(site=site)  # every new site starts with the default 90-day plan
    return site


def endpoint_save(*, endpoint: ServingEndpoint, bearer_token: str | None = None, clear_token: bool = False) -> (
        ServingEndpoint):
    """Save an endpoint. `bearer_token=None` keeps the stored token; `clear_token` removes it."""
    if clear_token:
        endpoint.bearer_token = ""
    elif bearer_token:
        endpoint.bearer_token = bearer_token
    endpoint.full_clean()
    endpoint.save()
    return endpoint


def node_issue_agent_token(*, node: Node) -> str:
    """A new push token for the node agent; only its hash is kept, so it is shown once."""
    token = new_token("fpn")
    node.agent_token_hash = hash_token(token)
    node.save(update_fields=["agent_token_hash", "updated_at"])
    return token
