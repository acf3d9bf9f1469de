"""Dashboard pages and their JSON (issue 7): overview, site page data and charts, the build-out plan."""

from dataclasses import replace

from tests.matrix import LOGIN, Case, reads, tenant_people, writes


def _milestone(w):
    from sites.buildout import milestone_plan_create
    from sites.models import SiteMilestone

    milestone_plan_create(site=w.site_a)  # idempotent: the world's sites come from factories, without a plan
    return SiteMilestone.objects.filter(site=w.site_a).order_by("planned_date").first()


site_a = lambda w: {"slug": w.site_a.slug}  # noqa: E731
milestone_a = lambda w: {"slug": w.site_a.slug, "pk": _milestone(w).pk}  # noqa: E731
site_name = lambda w, o: [getattr(w, f"site_{o}").name]  # noqa: E731
# Partner dashboards' JSON: any partner member gets their own (scoped) figures; tenant people have no sites, so
# they get an empty overview, never another organisation's data.
everyone = {"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 200, **tenant_people(200)}

CASES = [
    # Tenant people are sent to their own home.
    Case("home", id="home shows only own sites", hides=site_name,
         expect={"anonymous": LOGIN, "operator": 200, "viewer": 200, "outsider": 200, **tenant_people(302)}),
    Case("sites:overview_data", expect=everyone,
         hides=lambda w, o: [f"/sites/{getattr(w, f'site_{o}').slug}/", f"site-{getattr(w, f'site_{o}').pk}-"]),
    Case("sites:overview_chart", kwargs=lambda w: {"name": "gpu_states"}, expect=everyone, hides=site_name),
    reads("sites:site_data", kwargs=site_a, anonymous=401),
    reads("sites:site_chart", kwargs=lambda w: {"slug": w.site_a.slug, "name": "gpu_states"}, anonymous=401),
    replace(reads("sites:site_chart", kwargs=lambda w: {"slug": w.site_a.slug, "name": "buildout"}, anonymous=401),
            id="GET sites:site_chart buildout"),
    writes("sites:milestone_plan_create", method="post", ok=302, kwargs=site_a, data=lambda w: {}),
    writes("sites:milestone_edit", method="get", ok=200, kwargs=milestone_a),
    writes("sites:milestone_edit", method="post", ok=302, kwargs=milestone_a,
           data=lambda w: {"name": "Power secured", "planned_date": "2026-01-20", "done_date": "2026-01-18"}),
]
