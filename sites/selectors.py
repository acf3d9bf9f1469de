"""Reads of partner inventory. Every function scopes through `visible_to(user)`."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from sites.choices import WRITE_ROLES
from sites.models import Gpu, Membership, Node, Partner, ServingEndpoint, Site

User = AbstractBaseUser | AnonymousUser


def partner_roles_for(*, user: User) -> dict[int, str]:
    """partner id → role, for the user's memberships."""
    if not user.is_authenticated:
        return {}
    return dict(Membership.objects.filter(user_id=user.pk).values_list("partner_id", "role"))


def partner_list(*, user: User) -> QuerySet[Partner]:
    return Partner.objects.visible_to(user)


def partners_writable_by(*, user: User) -> QuerySet[Partner]:
    return Partner.objects.writable_by(user)


def user_can_write_partner(*, user: User, partner_id: int) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user_id=user.pk, partner_id=partner_id, role__in=WRITE_ROLES).exists()


def site_list(*, user: User) -> QuerySet[Site]:
    return (
        Site.objects.visible_to(user)
        .select_related("partner")
        .annotate(
            node_count=Count("nodes", distinct=True),
            gpu_count=Count("nodes__gpus", distinct=True),
            endpoint_count=Count("endpoints", distinct=True),
        )
    )


def site_get(*, user: User, slug: str) -> Site:
    """The site, or 404 if it does not exist or belongs to a partner the user is not a member of."""
    return get_object_or_404(Site.objects.visible_to(user).select_related("partner"), slug=slug)


def node_list(*, user: User, site: Site | None = None) -> QuerySet[Node]:
    qs = Node.objects.visible_to(user).select_related("site").annotate(gpu_count=Count("gpus"))
    return qs.filter(site=site) if site is not None else qs


def gpu_list(*, user: User, site: Site | None = None) -> QuerySet[Gpu]:
    qs = Gpu.objects.visible_to(user).select_related("node", "node__site")
    return qs.filter(node__site=site) if site is not None else qs


# What the site page's GPU table shows: its rows skip the site and the rest of each GPU's and node's columns.
GPU_TABLE_FIELDS = ("pk", "node_id", "node__hostname", "index", "uuid", "name", "status", "mig_mode", "last_seen_at",
                    "simulated")


def gpu_table(*, user: User, site: Site) -> QuerySet[Gpu]:
    """The site page's GPU table: `gpu_list` of the site with only the columns the table shows (a big site's page
    lists its first rows; slice it)."""
    return gpu_list(user=user, site=site).select_related(None).select_related("node").only(*GPU_TABLE_FIELDS)


def endpoint_list(*, user: User, site: Site | None = None) -> QuerySet[ServingEndpoint]:
    qs = ServingEndpoint.objects.visible_to(user).select_related("site", "node")
    return qs.filter(site=site) if site is not None else qs


def site_inventory_counts(*, site: Site) -> dict[str, int]:
    return Node.objects.filter(site=site).aggregate(
        nodes=Count("id", distinct=True),
        gpus=Count("gpus", distinct=True),
        gpus_lost=Count("gpus", filter=Q(gpus__status="lost"), distinct=True),
    )
