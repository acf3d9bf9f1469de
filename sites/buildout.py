"""The 90-day build-out plan of a site: the default plan, the tracker summary, and the writes to milestones.

The plan and the summary are pure functions (dates in, dataclasses out) so the tracker can be tested
without a database; `milestone_plan_create` and `milestone_update` are the services pages call.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from factory_portal.exceptions import ServiceError
from sites.choices import MilestoneKind
from sites.models import DEPLOYMENT_PLAN_DAYS, Site, SiteMilestone

# Day offsets within a 90-day plan (day 0 = contract date, day 90 = first tokens). When a site's
# target live date is not 90 days out, the offsets are stretched to its own span.
DEFAULT_PLAN: tuple[tuple[MilestoneKind, int], ...] = (
    (MilestoneKind.POWER_SECURED, 14),
    (MilestoneKind.HARDWARE_DELIVERED, 35),
    (MilestoneKind.RACKED, 50),
    (MilestoneKind.NETWORK, 60),
    (MilestoneKind.BURN_IN, 75),
    (MilestoneKind.FIRST_TOKENS, DEPLOYMENT_PLAN_DAYS),
)


@dataclass(frozen=True)
class PlannedMilestone:
    kind: str
    name: str
    planned_date: dt.date


def default_plan(*, contract_date: dt.date, target_live_date: dt.date | None = None) -> list[PlannedMilestone]:
    """The default milestones from the contract date (day 0) to the target live date (day 90 by default)."""
    span_days = (target_live_date - contract_date).days if target_live_date else DEPLOYMENT_PLAN_DAYS
    span_days = max(span_days, 0)
    return [
        PlannedMilestone(
            kind=kind.value,
            name=kind.label,
            planned_date=contract_date + dt.timedelta(days=round(offset * span_days / DEPLOYMENT_PLAN_DAYS)),
        )
        for kind, offset in DEFAULT_PLAN
    ]


def site_today(*, site: Site, now: dt.datetime | None = None) -> dt.date:
    """Today's date where the site is: a milestone is overdue by the site's calendar, not the server's."""
    now = now or timezone.now()
    return now.astimezone(zoneinfo.ZoneInfo(site.time_zone)).date()


@dataclass(frozen=True)
class MilestoneRow:
    pk: int | None
    kind: str
    name: str
    planned_date: dt.date
    done_date: dt.date | None
    # done | done_late | overdue | open
    state: str
    # Days after the planned date it was done (done_late) or is still open (overdue); 0 otherwise.
    days_late: int

    @property
    def state_label(self) -> str:
        return self.state.replace("_", " ")


@dataclass(frozen=True)
class BuildoutSummary:
    rows: list[MilestoneRow]
    total: int
    done: int
    progress_pct: int
    # no_plan | on_plan | behind_plan | complete
    status: str
    days_behind: int
    next_milestone: MilestoneRow | None
    live_since: dt.date | None
    expected_revenue_date: dt.date | None
    days_to_revenue: int | None

    @property
    def status_label(self) -> str:
        return {
            "no_plan": "No plan yet",
            "on_plan": "On plan",
            "behind_plan": f"Behind plan by {self.days_behind} d",
            "complete": "Build-out complete",
        }[self.status]


def buildout_summary(*, milestones: Iterable[SiteMilestone | PlannedMilestone], today: dt.date) -> BuildoutSummary:
    """The tracker: progress, on/behind plan and days to revenue.

    An open milestone past its planned date is overdue; the site is behind plan by the largest such
    delay, and the expected first-tokens date slips by the same number of days (the remaining steps
    are assumed to take as long as planned).
    """
    rows: list[MilestoneRow] = []
    for m in sorted(milestones, key=lambda m: (m.planned_date, getattr(m, "pk", None) or 0)):
        done_date = getattr(m, "done_date", None)
        if done_date is not None:
            late = (done_date - m.planned_date).days
            state, days_late = ("done_late", late) if late > 0 else ("done", 0)
        elif m.planned_date < today:
            state, days_late = "overdue", (today - m.planned_date).days
        else:
            state, days_late = "open", 0
        rows.append(MilestoneRow(pk=getattr(m, "pk", None), kind=m.kind, name=m.name, planned_date=m.planned_date,
                                 done_date=done_date, state=state, days_late=days_late))
    total = len(rows)
    done = sum(1 for r in rows if r.done_date is not None)
    days_behind = max((r.days_late for r in rows if r.state == "overdue"), default=0)
    if total == 0:
        status = "no_plan"
    elif done == total:
        status = "complete"
    else:
        status = "behind_plan" if days_behind > 0 else "on_plan"
    first_tokens = next((r for r in rows if r.kind == MilestoneKind.FIRST_TOKENS), None)
    live_since = first_tokens.done_date if first_tokens else None
    expected = days_to = None
    if first_tokens is not None and live_since is None:
        expected = first_tokens.planned_date + dt.timedelta(days=days_behind)
        days_to = (expected - today).days
    return BuildoutSummary(
        rows=rows,
        total=total,
        done=done,
        progress_pct=round(100 * done / total) if total else 0,
        status=status,
        days_behind=days_behind,
        next_milestone=next((r for r in rows if r.done_date is None), None),
        live_since=live_since,
        expected_revenue_date=expected,
        days_to_revenue=days_to,
    )


def milestone_plan_create(*, site: Site) -> int:
    """Give the site the default plan's missing milestones; returns how many were added (idempotent)."""
    existing = set(SiteMilestone.objects.filter(site=site).values_list("kind", flat=True))
    missing = [
        SiteMilestone(site=site, kind=p.kind, name=p.name, planned_date=p.planned_date)
        for p in default_plan(contract_date=site.contract_date, target_live_date=site.target_live_date)
        if p.kind not in existing
    ]
    # ignore_conflicts: two requests creating the plan at once must not fail on the (site, kind) key.
    SiteMilestone.objects.bulk_create(missing, ignore_conflicts=True)
    return len(missing)


@transaction.atomic
def milestone_update(
    *, milestone: SiteMilestone, name: str, planned_date: dt.date, done_date: dt.date | None,
    now: dt.datetime | None = None,
) -> SiteMilestone:
    """Re-plan or complete a milestone. A step cannot be marked done on a day that has not come yet."""
    if done_date is not None and done_date > site_today(site=milestone.site, now=now):
        raise ServiceError("The done date cannot be in the future (site time).", field="done_date")
    milestone.name = name
    milestone.planned_date = planned_date
    milestone.done_date = done_date
    milestone.full_clean()
    milestone.save()
    return milestone
