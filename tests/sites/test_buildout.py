"""The 90-day build-out plan: default plan, tracker summary, services, JSON and page behaviour."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.urls import reverse

from factory_portal.exceptions import ServiceError
from sites.buildout import PlannedMilestone, buildout_summary, default_plan, milestone_plan_create, milestone_update
from sites.charts import buildout_figure
from sites.models import SiteMilestone
from sites.services import site_save
from tests import factories

CONTRACT = dt.date(2026, 3, 1)


def test_default_plan_runs_from_contract_date_to_day_90() -> None:
    # given / when
    plan = default_plan(contract_date=CONTRACT)
    # then
    assert [p.kind for p in plan] == ["power_secured", "hardware_delivered", "racked", "network", "burn_in",
                                      "first_tokens"]
    assert plan[0].planned_date == CONTRACT + dt.timedelta(days=14)
    assert plan[-1].planned_date == CONTRACT + dt.timedelta(days=90)
    assert [p.planned_date for p in plan] == sorted(p.planned_date for p in plan)


def test_default_plan_stretches_to_a_later_target_live_date() -> None:
    # given / when
    plan = default_plan(contract_date=CONTRACT, target_live_date=CONTRACT + dt.timedelta(days=180))
    # then
    assert plan[0].planned_date == CONTRACT + dt.timedelta(days=28)
    assert plan[-1].planned_date == CONTRACT + dt.timedelta(days=180)


def _plan(done: dict[str, dt.date] | None = None) -> list:
    done = done or {}
    rows = default_plan(contract_date=CONTRACT)
    return [type("M", (), {"pk": i, "kind": p.kind, "name": p.name, "planned_date": p.planned_date,
                           "done_date": done.get(p.kind)})() for i, p in enumerate(rows, 1)]


def test_summary_on_plan_before_the_first_due_date() -> None:
    # given
    today = CONTRACT + dt.timedelta(days=10)
    # when
    s = buildout_summary(milestones=_plan(), today=today)
    # then
    assert (s.status, s.done, s.total, s.progress_pct, s.days_behind) == ("on_plan", 0, 6, 0, 0)
    assert s.days_to_revenue == 80
    assert s.expected_revenue_date == CONTRACT + dt.timedelta(days=90)
    assert s.next_milestone.kind == "power_secured"


def test_summary_behind_plan_slips_the_revenue_date() -> None:
    # given: power secured 2 days late, hardware (day 35) still open on day 45
    today = CONTRACT + dt.timedelta(days=45)
    done = {"power_secured": CONTRACT + dt.timedelta(days=16)}
    # when
    s = buildout_summary(milestones=_plan(done), today=today)
    # then
    assert s.status == "behind_plan" and s.status_label == "Behind plan by 10 d"
    assert [r.state for r in s.rows[:3]] == ["done_late", "overdue", "open"]
    assert s.rows[0].days_late == 2 and s.rows[1].days_late == 10
    assert s.expected_revenue_date == CONTRACT + dt.timedelta(days=100)
    assert s.days_to_revenue == 55
    assert s.progress_pct == 17


def test_summary_complete_reports_live_since() -> None:
    # given
    done = {p.kind: p.planned_date for p in default_plan(contract_date=CONTRACT)}
    # when
    s = buildout_summary(milestones=_plan(done), today=CONTRACT + dt.timedelta(days=120))
    # then
    assert s.status == "complete" and s.progress_pct == 100
    assert s.live_since == CONTRACT + dt.timedelta(days=90)
    assert s.days_to_revenue is None


def test_summary_without_milestones_says_no_plan() -> None:
    # given / when
    s = buildout_summary(milestones=[], today=CONTRACT)
    # then
    assert (s.status, s.total, s.progress_pct, s.days_to_revenue) == ("no_plan", 0, 0, None)


def test_summary_accepts_unsaved_planned_milestones() -> None:
    # given
    plan: list[PlannedMilestone] = default_plan(contract_date=CONTRACT)
    # when
    s = buildout_summary(milestones=plan, today=CONTRACT)
    # then
    assert s.total == 6 and s.rows[0].pk is None


@pytest.mark.django_db
def test_new_site_gets_the_default_plan_once(world) -> None:
    # given
    site = factories.SiteFactory.build(partner=world.partner_a, name="Fresh", slug="", contract_date=CONTRACT)
    # when
    site_save(site=site)
    added_again = milestone_plan_create(site=site)
    added_third = milestone_plan_create(site=site)
    # then
    assert SiteMilestone.objects.filter(site=site).count() == 6
    assert added_again == added_third == 0
    assert SiteMilestone.objects.get(site=site, kind="first_tokens").planned_date == site.target_live_date


@pytest.mark.django_db
@time_machine.travel(dt.datetime(2026, 4, 1, 22, 30, tzinfo=dt.UTC), tick=False)
def test_done_date_cannot_be_in_the_future_of_the_site_calendar(world) -> None:
    # given: 22:30 UTC is already April 2nd in Tokyo
    site = world.site_a
    site.time_zone, site.contract_date = "Asia/Tokyo", CONTRACT
    site.save()
    milestone_plan_create(site=site)
    m = SiteMilestone.objects.get(site=site, kind="power_secured")
    # when
    milestone_update(milestone=m, name=m.name, planned_date=m.planned_date, done_date=dt.date(2026, 4, 2))
    # then
    assert SiteMilestone.objects.get(pk=m.pk).done_date == dt.date(2026, 4, 2)
    with pytest.raises(ServiceError) as err:
        milestone_update(milestone=m, name=m.name, planned_date=m.planned_date, done_date=dt.date(2026, 4, 3))
    assert err.value.field == "done_date"


@pytest.mark.django_db
def test_milestone_form_shows_errors_instead_of_500(world, client_for) -> None:
    # given
    milestone_plan_create(site=world.site_a)
    m = SiteMilestone.objects.filter(site=world.site_a).first()
    url = reverse("sites:milestone_edit", kwargs={"slug": world.site_a.slug, "pk": m.pk})
    # when
    before_contract = client_for("operator").post(url, {"name": "x", "planned_date": "2020-01-01"})
    garbage = client_for("operator").post(url, {"name": "x", "planned_date": "not a date"})
    future = client_for("operator").post(url, {"name": "x", "planned_date": m.planned_date.isoformat(),
                                               "done_date": "2999-01-01"})
    # then
    assert before_contract.status_code == garbage.status_code == future.status_code == 200
    assert b"cannot be planned before the contract date" in before_contract.content
    assert b"Enter a valid date" in garbage.content
    assert b"cannot be in the future" in future.content


@pytest.mark.django_db
def test_milestone_of_another_site_is_404(world, client_for) -> None:
    # given: a milestone of site B requested through site A's URL
    milestone_plan_create(site=world.site_b)
    other = SiteMilestone.objects.filter(site=world.site_b).first()
    url = reverse("sites:milestone_edit", kwargs={"slug": world.site_a.slug, "pk": other.pk})
    # when
    response = client_for("operator").get(url)
    # then
    assert response.status_code == 404


def test_buildout_figure_marks_today_and_escapes_names() -> None:
    # given
    plan = _plan({"power_secured": CONTRACT + dt.timedelta(days=14)})
    plan[1].name = "<i>Hardware</i>"
    today = CONTRACT + dt.timedelta(days=40)
    # when
    fig = buildout_figure(summary=buildout_summary(milestones=plan, today=today), today=today)
    # then
    planned, done, overdue = fig["data"]
    assert len(planned["x"]) == 6 and done["x"] == [(CONTRACT + dt.timedelta(days=14)).isoformat()]
    assert overdue["y"] == ["&lt;i&gt;Hardware&lt;/i&gt;"]
    assert fig["layout"]["shapes"][0]["x0"] == today.isoformat()
    assert fig["layout"]["xaxis"]["title"]["text"] == "date (site calendar)"
