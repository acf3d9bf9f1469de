"""Chart JSON for the overview and the site page: pure functions from dashboard selectors to Plotly figures.

Charts are registered by name (`OVERVIEW_CHARTS`, `SITE_CHARTS`) and served by one small JSON view
each (`sites:overview_chart`, `sites:site_chart`); the page's `live.js` fetches them and calls
`Plotly.react`. Telemetry and metering add their charts by registering a builder with the same
signature — see docs/dashboards.md, "How to add a chart".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from factory_portal.charts import STATE_COLORS, base_layout, empty_figure, escape_label
from factory_portal.timerange import TimeRange
from sites.buildout import BuildoutSummary, buildout_summary, site_today
from sites.dashboard import DEFINITIONS, GPU_STATES, SiteCard, node_gpu_states
from sites.models import Node, Site, SiteMilestone
from sites.selectors import User


@dataclass(frozen=True)
class ChartContext:
    """What a chart builder gets: the user (for its own scoped selectors), the cards already read, the range."""

    user: User
    cards: list[SiteCard]
    time_range: TimeRange
    now: dt.datetime
    # The visible sites (the page's one site, or all on the overview). Builders registered with `cards=False`
    # get only these (`cards` is empty): reading every GPU's inventory for a time-series chart is wasted work.
    sites: list[Site] = field(default_factory=list)


ChartBuilder = Callable[[ChartContext], dict]
OVERVIEW_CHARTS: dict[str, ChartBuilder] = {}
SITE_CHARTS: dict[str, ChartBuilder] = {}
# Builders that need no cards (registered with `cards=False`).
CARDLESS: set[ChartBuilder] = set()


def register(registry: dict[str, ChartBuilder], name: str, *, cards: bool = True,
             ) -> Callable[[ChartBuilder], ChartBuilder]:
    def decorator(fn: ChartBuilder) -> ChartBuilder:
        registry[name] = fn
        if not cards:
            CARDLESS.add(fn)
        return fn

    return decorator


def gpu_state_figure(*, rows: list[tuple[str, dict[str, int]]], category_title: str, empty_message: str) -> dict:
    """Stacked bars of GPUs by state (online / stale / unhealthy / lost) per category (site or node)."""
    if not rows or not any(sum(counts.values()) for _, counts in rows):
        return empty_figure(message=empty_message, x_title=category_title, y_title="GPUs", y_unit="count")
    labels = [escape_label(label) for label, _ in rows]
    data = [
        {
            "type": "bar", "name": state, "x": labels, "y": [counts.get(state, 0) for _, counts in rows],
            "marker": {"color": STATE_COLORS[state]},
            "hovertemplate": f"%{{x}}<br>%{{y}} GPU(s) {state}<br>{escape_label(DEFINITIONS[state])}<extra></extra>",
        }
        for state in GPU_STATES
    ]
    layout = base_layout(x_title=category_title, x_unit="", y_title="GPUs", y_unit="count", barmode="stack")
    if max(sum(c.values()) for _, c in rows) <= 10:
        layout["yaxis"]["dtick"] = 1  # whole GPUs: no 0.5 ticks on small sites
    return {"data": data, "layout": layout, "meta": {"empty": False}}


STATE_STYLE = {
    "done": ("#1a7f37", "circle"), "done_late": ("#9a6700", "circle"),
    "overdue": ("#cf222e", "circle-open"), "open": ("#57606a", "circle-open"),
}


def buildout_figure(*, summary: BuildoutSummary, today: dt.date) -> dict:
    """The build-out timeline: each milestone's planned date, its done date, and today (site calendar)."""
    if not summary.rows:
        return empty_figure(message="No build-out plan yet.", x_title="date", x_unit="site calendar")
    names = [escape_label(r.name) for r in summary.rows]
    planned = {
        "type": "scatter", "mode": "markers", "name": "planned",
        "x": [r.planned_date.isoformat() for r in summary.rows], "y": names,
        "marker": {"symbol": "line-ns-open", "size": 18, "color": "#0b57d0", "line": {"width": 3}},
        "hovertemplate": "%{y}<br>planned %{x}<extra></extra>",
    }
    done = [r for r in summary.rows if r.done_date]
    actual = {
        "type": "scatter", "mode": "markers", "name": "done",
        "x": [r.done_date.isoformat() for r in done], "y": [escape_label(r.name) for r in done],
        "marker": {"size": 12, "color": [STATE_STYLE[r.state][0] for r in done]},
        "customdata": [r.days_late for r in done],
        "hovertemplate": "%{y}<br>done %{x} (%{customdata} d late)<extra></extra>",
    }
    overdue = [r for r in summary.rows if r.state == "overdue"]
    late = {
        "type": "scatter", "mode": "markers", "name": "overdue",
        "x": [today.isoformat()] * len(overdue), "y": [escape_label(r.name) for r in overdue],
        "marker": {"size": 12, "symbol": "x", "color": "#cf222e"},
        "customdata": [r.days_late for r in overdue],
        "hovertemplate": "%{y}<br>open, %{customdata} d overdue<extra></extra>",
    }
    layout = base_layout(
        x_title="date", x_unit="site calendar", y_title="milestone", y_unit="",
        yaxis={"autorange": "reversed", "type": "category", "rangemode": "normal"},
        xaxis={"type": "date"},
        shapes=[{"type": "line", "xref": "x", "yref": "paper", "x0": today.isoformat(), "x1": today.isoformat(),
                 "y0": 0, "y1": 1, "line": {"color": "#cf222e", "dash": "dot", "width": 1}}],
        annotations=[{"text": "today", "xref": "x", "yref": "paper", "x": today.isoformat(), "y": 1.0,
                      "yanchor": "bottom", "xanchor": "left",
                      "showarrow": False, "font": {"size": 11, "color": "#cf222e"}}],
        margin={"t": 40},
    )
    return {"data": [planned, actual, late], "layout": layout, "meta": {"empty": False}}


@register(OVERVIEW_CHARTS, "gpu_states", cards=False)
def overview_gpu_states(ctx: ChartContext) -> dict:
    states = node_gpu_states(user=ctx.user, sites=ctx.sites, now=ctx.now)
    rows = []
    for site in ctx.sites:
        counts = dict.fromkeys(GPU_STATES, 0)
        for node_counts in states.get(site.pk, {}).values():
            for state in GPU_STATES:
                counts[state] += node_counts[state]
        rows.append((site.name, counts))
    return gpu_state_figure(rows=rows, category_title="site",
                            empty_message="No GPUs yet: start a node worker on each GPU server.")


@register(SITE_CHARTS, "gpu_states", cards=False)
def site_gpu_states(ctx: ChartContext) -> dict:
    site = ctx.sites[0]
    states = node_gpu_states(user=ctx.user, sites=[site], now=ctx.now).get(site.pk, {})
    hosts = dict(Node.objects.visible_to(ctx.user).filter(site=site).values_list("pk", "hostname"))
    rows = sorted((hosts[pk], states.get(pk, dict.fromkeys(GPU_STATES, 0))) for pk in hosts)
    return gpu_state_figure(rows=rows, category_title="node",
                            empty_message="No GPUs yet: a node worker registers its GPUs on its first poll.")


@register(SITE_CHARTS, "buildout", cards=False)
def site_buildout(ctx: ChartContext) -> dict:
    site = ctx.sites[0]
    today = site_today(site=site, now=ctx.now)
    summary = buildout_summary(milestones=SiteMilestone.objects.visible_to(ctx.user).filter(site=site), today=today)
    return buildout_figure(summary=summary, today=today)
