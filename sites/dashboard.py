"""Reads behind the partner overview and the site page: cards and alerts.

Every query starts from `visible_to(user)`. The overview costs a fixed number of queries whatever the
number of sites (one per table), then pure code builds the cards. Figures that need telemetry, metering or
economics come from apps above `sites` (DESIGN.md §3: sites imports neither), through *card providers* they
register at start-up (`register_card_provider`): telemetry fills `SiteCard.figures` (utilization, power
drawn, tokens/s) and its alerts; the economics of the tenants app fills `SiteCard.economics` (revenue today,
cost per million tokens, margin, as display text). Without a provider the pages say so instead of a number.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections import defaultdict, namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import reduce

from django.conf import settings
from django.db.models import Count, Min, Q, Sum
from django.urls import reverse
from django.utils import timezone

from sites.buildout import BuildoutSummary, buildout_summary, site_today
from sites.choices import EndpointHealth, GpuStatus, NodeStatus
from sites.compliance import OK, GpuVersionGroup, ItemCompliance, SiteCompliance, site_compliance
from sites.models import Gpu, Node, ServingEndpoint, Site, SiteMilestone
from sites.selectors import User

# A GPU is stale when no reading arrived within this many of its site's poll intervals.
STALE_AFTER_POLLS = 3
GPU_STATES = ("online", "stale", "unhealthy", "lost")
DEFINITIONS = {
    "online": f"Status OK and a reading within the last {STALE_AFTER_POLLS} poll intervals.",
    "stale": f"Status OK but no reading within the last {STALE_AFTER_POLLS} poll intervals (or none yet).",
    "unhealthy": "The node worker reported an error for this GPU (see its last error).",
    "lost": "The GPU disappeared from its node (NVML no longer lists it).",
    "power": "Contracted power capacity of the site, in kW.",
    "buildout": "Milestones done of the site's build-out plan; behind plan when an open milestone is past its "
                "planned date (site calendar).",
    "days_to_revenue": "Days until the first-tokens milestone, slipped by the current delay when behind plan.",
    "utilization": "GPU utilization: mean of NVML utilization.gpu (% of time a kernel ran) over the period; live "
                   "cards (utilization now): mean of each GPU's latest reading, over the GPUs that reported one "
                   f"within the last {STALE_AFTER_POLLS} poll intervals (GPUs without utilization left out).",
    "utilization_target": "Alert when the site's mean GPU utilization over the last hour is below its target.",
    "power_drawn": "GPU power drawn now: sum of each GPU's latest NVML power reading, over the GPUs that reported "
                   f"one within the last {STALE_AFTER_POLLS} poll intervals (kW). Facility estimate = × the site's "
                   "PUE.",
    "over_power": "Alert when the GPUs' draw × PUE exceeds the contracted power capacity.",
    "tokens": "Prompt + generated tokens per second, from the serving engines' cumulative counters (usage deltas "
              "of the last 5 minutes on cards; per bucket on charts).",
    "ttft": "Time to first token: mean over the requests observed in the period (engine histogram sum ÷ count).",
    "itl": "Inter-token latency: mean time between generated tokens over the period.",
    "heatmap": "Each cell: the GPU's mean NVML utilization over the column (blank = no reading); on a site with "
               "more than 1,200 GPUs a row is a node (the sample-weighted mean of its GPUs).",
    "revenue": "Attributed tokens × each tenant's price per million tokens, since midnight site time.",
    "cost": "Cost per million tokens: (energy cost + capex amortization + opex) ÷ tokens × 10⁶.",
    "margin": "(Revenue − cost) ÷ revenue over the period.",
    "compliance": "Nodes, GPUs and endpoints whose reported versions differ from the site's pinned baseline.",
}


def gpu_state(*, status: str, last_seen_at: dt.datetime | None, poll_interval_s: int, now: dt.datetime) -> str:
    if status == GpuStatus.LOST:
        return "lost"
    if status == GpuStatus.UNHEALTHY:
        return "unhealthy"
    fresh = last_seen_at is not None and now - last_seen_at <= dt.timedelta(seconds=STALE_AFTER_POLLS *
                                                                               poll_interval_s)
    return "online" if fresh else "stale"


@dataclass(frozen=True)
class Alert:
    level: str  # bad | warn
    text: str
    url: str
    site_id: int


@dataclass
class SiteCard:
    site: Site
    gpus: dict[str, int]
    nodes_total: int
    endpoints_total: int
    endpoints_unhealthy: int
    buildout: BuildoutSummary
    compliance: SiteCompliance | None = None
    alerts: list[Alert] = field(default_factory=list)
    node_gpus: dict[str, dict[str, int]] = field(default_factory=dict)
    # Per node id, its GPUs by state (`node_gpu_states`): handed to the site page's providers so the node table does
    # not count 9,000 GPUs a second time in the same request.
    node_states: dict[int, dict[str, int]] = field(default_factory=dict)
    # The site's node rows (`NodeRow`, by hostname), for the site page's providers (its node table) in the same
    # request, so 1,125 nodes are read once.
    nodes: list = field(default_factory=list)
    # What the card's read or its providers computed that providers of the same request can reuse: "gpu_latest" (the
    # GPUs' latest readings from the inventory scan, `gpu_inventory`; None = no GPU reported within the window) for
    # telemetry's live figures, "endpoint_usage" (telemetry: the endpoints' usage of the last minutes) for the site
    # page's endpoint table.
    shared: dict = field(default_factory=dict)
    # Filled by card providers (see the module docstring). `figures`: numbers in their units — `util_pct`,
    # `gpus_reporting`, `power_w`, `tokens_per_s` — absent when unknown (absent is not zero).
    figures: dict[str, float] = field(default_factory=dict)
    # Display text from the economics provider: `revenue_today`, `cost_per_mtok`, `margin`.
    economics: dict[str, str] = field(default_factory=dict)

    @property
    def gpus_total(self) -> int:
        return sum(self.gpus.values())

    @property
    def is_stale(self) -> bool:
        """Nothing on the card is live: the site has GPUs and none of them reported recently."""
        return self.gpus_total > 0 and self.gpus["online"] == 0 and self.gpus["stale"] > 0

    def values(self) -> dict[str, str]:
        """Card values as text; the page renders them first, then live.js replaces them from `fields()`."""
        b = self.buildout
        return {
            "status": self.site.get_status_display(),
            "gpus_total": str(self.gpus_total),
            **{f"gpus_{state}": str(self.gpus[state]) for state in GPU_STATES},
            "nodes": str(self.nodes_total),
            "endpoints": str(self.endpoints_total),
            "endpoints_unhealthy": str(self.endpoints_unhealthy),
            "power_kw": f"{self.site.power_capacity_kw.normalize():,f} kW",
            "buildout": f"{b.done}/{b.total} · {b.status_label}" if b.total else b.status_label,
            "buildout_pct": str(b.progress_pct),
            "days_to_revenue": _days_to_revenue_text(b),
            "alerts": str(len(self.alerts)),
            **live_figure_texts(self.figures, capacity_kw=self.site.power_capacity_kw),
            **{k: self.economics.get(k, ECONOMICS_PENDING) for k in ECONOMICS_KEYS},
        }

    def fields(self) -> dict[str, str]:
        """`values()` keyed as the templates' `data-live` attributes (`site-<id>-<name>`)."""
        return {f"site-{self.site.pk}-{k}": v for k, v in self.values().items()}

    def stale_keys(self) -> list[str]:
        keys = []
        if self.is_stale:
            keys += [f"site-{self.site.pk}-gpus_{state}" for state in GPU_STATES]
        if self.gpus_total and not self.figures.get("gpus_reporting"):
            keys += [f"site-{self.site.pk}-{k}" for k in ("util", "power_drawn", "power_pct")]
        return keys


NO_READINGS = "no telemetry yet"
ECONOMICS_KEYS = ("revenue_today", "cost_per_mtok", "margin")
ECONOMICS_PENDING = "no economics yet"


def live_figure_texts(figures: dict[str, float], *, capacity_kw: Decimal | None) -> dict[str, str]:
    """Card texts of the live figures; a figure nobody reported reads "no telemetry yet", never 0."""
    util, power_w, tokens = figures.get("util_pct"), figures.get("power_w"), figures.get("tokens_per_s")
    out = {
        "util": f"{util:.0f} %" if util is not None else NO_READINGS,
        "power_drawn": f"{power_w / 1000:,.1f} kW" if power_w is not None else NO_READINGS,
        "power_pct": "",
        "gpus_reporting": str(int(figures.get("gpus_reporting", 0))),
        "tokens_per_s": f"{tokens:,.0f} tokens/s" if tokens is not None else NO_READINGS,
    }
    if power_w is not None and capacity_kw:
        pct = power_w / 10 / float(capacity_kw)
        out["power_pct"] = f"{pct:.1f} % of contracted" if pct < 10 else f"{pct:.0f} % of contracted"
    return out


# (user, cards, now) → None: a provider fills `figures` / `economics` and appends alerts of the cards it knows.
CardProvider = Callable[..., None]
CARD_PROVIDERS: dict[str, CardProvider] = {}


# (user, site, now, all_nodes, node_states, card) → dict: extra context of the site page (e.g. the node and
# endpoint tables with live figures), and the same arguments → (fields, stale keys) for its live JSON. `all_nodes` is
# the page's "show all nodes" (`?nodes=all`); otherwise a big site's node table lists its problem nodes and the first
# healthy ones.
SitePageProvider = Callable[..., dict]
SiteFieldsProvider = Callable[..., tuple[dict[str, str], list[str]]]
SITE_PAGE_PROVIDERS: dict[str, SitePageProvider] = {}
SITE_FIELDS_PROVIDERS: dict[str, SiteFieldsProvider] = {}


def site_page_context(*, user: User, site: Site, now: dt.datetime, all_nodes: bool = False,
                      node_states: dict[int, dict[str, int]] | None = None, card: SiteCard | None = None) -> dict:
    """Extra context of the site page from the registered providers. `node_states`: the site card's GPUs by state
    per node at `now` (None: the providers count them); `card`: the site's card of the same request, whose node rows,
    counts and providers' `shared` figures the providers reuse instead of reading them again."""
    context: dict = {}
    for provider in SITE_PAGE_PROVIDERS.values():
        context |= provider(user=user, site=site, now=now, all_nodes=all_nodes, node_states=node_states, card=card)
    return context


def site_live_fields(*, user: User, site: Site, now: dt.datetime, all_nodes: bool = False,
                     node_states: dict[int, dict[str, int]] | None = None,
                     card: SiteCard | None = None) -> tuple[dict[str, str], list[str]]:
    """Extra live fields (`data-live` key → text) and stale keys of the site page from the registered providers
    (`card` as for `site_page_context`)."""
    fields: dict[str, str] = {}
    stale: list[str] = []
    for provider in SITE_FIELDS_PROVIDERS.values():
        f, s = provider(user=user, site=site, now=now, all_nodes=all_nodes, node_states=node_states, card=card)
        fields |= f
        stale += s
    return fields, stale


def register_card_provider(name: str, provider: CardProvider) -> None:
    """Called from an app's `AppConfig.ready()`: `provider(user=..., cards=..., now=...)` runs on every card read.
    The tenants app's economics registers one that sets `card.economics[k]` for k in `ECONOMICS_KEYS`."""
    CARD_PROVIDERS[name] = provider


def _days_to_revenue_text(b: BuildoutSummary) -> str:
    if b.live_since:
        return f"earning since {b.live_since.isoformat()}"
    if b.days_to_revenue is None:
        return "no plan"
    if b.days_to_revenue <= 0:
        return "due now"
    return f"{b.days_to_revenue} d"


def _site_alerts(card: SiteCard, nodes: list[dict], endpoints: list[dict], url: str) -> list[Alert]:
    site_id = card.site.pk
    alerts: list[Alert] = []
    for n in nodes:
        if n["status"] in (NodeStatus.STALE, NodeStatus.UNHEALTHY):
            seen = n["last_seen_at"].strftime("%Y-%m-%d %H:%M UTC") if n["last_seen_at"] else "never"
            level = "bad" if n["status"] == NodeStatus.UNHEALTHY else "warn"
            reason = f": {n['last_error'][:120]}" if n["last_error"] else ""
            alerts.append(Alert(level, f"Node {n['hostname']} is {n['status']} (last seen {seen}){reason}", url,
                                site_id))
        if _clock_off(n["clock_offset_s"]):
            alerts.append(Alert("warn", f"Node {n['hostname']}'s clock is off by {n['clock_offset_s']:+.0f} s: its "
                                        "readings are re-timed to the server's clock; check NTP", url, site_id))
    for e in endpoints:
        if e["health"] == EndpointHealth.UNHEALTHY:
            reason = f": {e['last_error'][:120]}" if e["last_error"] else ""
            alerts.append(Alert("bad", f"Endpoint {e['name']} is unhealthy{reason}", url, site_id))
    if card.gpus["lost"]:
        alerts.append(Alert("bad", f"{card.gpus['lost']} GPU(s) lost at {card.site.name}", url, site_id))
    if card.gpus["unhealthy"]:
        alerts.append(Alert("bad", f"{card.gpus['unhealthy']} GPU(s) unhealthy at {card.site.name}", url, site_id))
    b = card.buildout
    if b.status == "behind_plan":
        late = next(r for r in b.rows if r.state == "overdue")
        alerts.append(Alert("warn", f"{card.site.name} is behind plan by {b.days_behind} d ({late.name} was due "
                                    f"{late.planned_date.isoformat()})", url, site_id))
    if card.compliance is not None and card.compliance.drift:
        alerts.append(Alert("warn", f"{card.compliance.drift} item(s) at {card.site.name} drift from the software "
                                    "baseline", url, site_id))
    return alerts


def _fresh_q(sites: list[Site], now: dt.datetime) -> Q:
    """GPUs with a reading within `STALE_AFTER_POLLS` poll intervals of their site (intervals differ per site)."""
    return reduce(operator.or_, (Q(node__site_id=s.pk, last_seen_at__gte=now - dt.timedelta(
        seconds=STALE_AFTER_POLLS * s.gpu_poll_interval_s)) for s in sites))


def node_gpu_states(*, user: User, sites: list[Site], now: dt.datetime) -> dict[int, dict[int, dict[str, int]]]:
    """Per site id, per node id: its GPUs by state (`GPU_STATES`), counted in the database with `COUNT … FILTER`
    grouped by node — the rule of `gpu_state`, without loading a row per GPU. Nodes without GPUs are absent."""
    if not sites:
        return {}
    bad = [GpuStatus.LOST, GpuStatus.UNHEALTHY]
    rows = (Gpu.objects.visible_to(user).filter(node__site_id__in=[s.pk for s in sites])
            .values("node_id", "node__site_id")
            .annotate(lost=Count("pk", filter=Q(status=GpuStatus.LOST)),
                      unhealthy=Count("pk", filter=Q(status=GpuStatus.UNHEALTHY)),
                      online=Count("pk", filter=_fresh_q(sites, now) & ~Q(status__in=bad)), total=Count("pk"))
            .order_by())
    out: dict[int, dict[int, dict[str, int]]] = defaultdict(dict)
    for r in rows:
        stale = r["total"] - r["lost"] - r["unhealthy"] - r["online"]
        out[r["node__site_id"]][r["node_id"]] = {"online": r["online"], "stale": stale,
                                                 "unhealthy": r["unhealthy"], "lost": r["lost"]}
    return out


def gpu_inventory(*, user: User, sites: list[Site], now: dt.datetime
                  ) -> tuple[dict[int, dict[int, dict[str, int]]], dict[int, list[GpuVersionGroup]], dict[int, dict]]:
    """`node_gpu_states`, `gpu_version_groups` and the GPUs' latest readings per site from one scan of the sites'
    GPUs: counted in SQL per (node, reported driver, reported CUDA), then summed per node (states), per (site,
    versions) (groups, with the lowest GPU id as example) and per site (latest readings) in Python. A 9,000-GPU site
    reads ~1,100 rows once instead of scanning its GPUs three times (the live JSON polls this every 15 s).

    The latest readings are `telemetry.gpu_selectors.sites_gpu_now`'s figures (`Gpu.last_util_pct`, `last_power_w`
    of the GPUs whose newest reading is within `STALE_AFTER_POLLS` poll intervals of their site, not after `now`):
    per site `{"gpus_reporting", "util_mean_pct", "power_w"}`, absent when no GPU has such a reading."""
    if not sites:
        return {}, {}, {}
    bad = [GpuStatus.LOST, GpuStatus.UNHEALTHY]
    fresh = _fresh_q(sites, now)
    recent = fresh & Q(last_seen_at__lte=now)
    rows = (Gpu.objects.visible_to(user).filter(node__site_id__in=[s.pk for s in sites])
            .values_list("node_id", "node__site_id", "driver_version", "cuda_driver_version")
            .annotate(lost=Count("pk", filter=Q(status=GpuStatus.LOST)),
                      unhealthy=Count("pk", filter=Q(status=GpuStatus.UNHEALTHY)),
                      online=Count("pk", filter=fresh & ~Q(status__in=bad)), total=Count("pk"),
                      example=Min("pk"), reporting=Count("pk", filter=recent),
                      util_sum=Sum("last_util_pct", filter=recent), util_n=Count("last_util_pct", filter=recent),
                      power=Sum("last_power_w", filter=recent))
            .order_by())
    states: dict[int, dict[int, dict[str, int]]] = defaultdict(dict)
    groups: dict[tuple[int, str, str], list[int]] = {}
    latest: dict[int, list] = {}
    for node_id, site_id, driver, cuda, lost, unhealthy, online, total, example, reporting, util_sum, util_n, power \
            in rows:
        if reporting:
            acc = latest.setdefault(site_id, [0, 0, 0, None])
            acc[0] += reporting
            acc[1] += util_sum or 0
            acc[2] += util_n
            if power is not None:  # None = no GPU of the site reported power (absent, not 0)
                acc[3] = (acc[3] or 0.0) + power
        c = states[site_id].setdefault(node_id, dict.fromkeys(GPU_STATES, 0))
        c["online"] += online
        c["stale"] += total - lost - unhealthy - online
        c["unhealthy"] += unhealthy
        c["lost"] += lost
        if driver or cuda:  # as gpu_version_groups: a GPU reporting neither version is not checked
            g = groups.setdefault((site_id, driver, cuda), [0, example])
            g[0] += total
            g[1] = min(g[1], example)
    versions = _version_groups([(site_id, driver, cuda, n, example)
                                for (site_id, driver, cuda), (n, example) in groups.items()])
    return states, versions, {
        site_id: {"gpus_reporting": n, "util_mean_pct": util_sum / util_n if util_n else None,
                  "power_w": float(power) if power is not None else None}
        for site_id, (n, util_sum, util_n, power) in latest.items()}


def _version_groups(rows: list[tuple[int, str, str, int, int]]) -> dict[int, list[GpuVersionGroup]]:
    """(site id, driver, CUDA, GPU count, example GPU id) rows as `GpuVersionGroup`s per site, labelled by example."""
    labels = {pk: f"{host}/gpu{index}" for pk, host, index in Gpu.objects.filter(
        pk__in=[r[4] for r in rows]).values_list("pk", "node__hostname", "index")} if rows else {}
    out: dict[int, list[GpuVersionGroup]] = defaultdict(list)
    for site_id, driver, cuda, n, example in sorted(rows, key=lambda r: labels.get(r[4], "")):
        out[site_id].append(GpuVersionGroup(driver_version=driver, cuda_driver_version=cuda, count=n,
                                            example=labels.get(example, str(example)), example_pk=example))
    return out


def gpu_version_groups(*, user: User, site_ids: list[int]) -> dict[int, list[GpuVersionGroup]]:
    """Per site, its GPUs grouped by reported (driver, CUDA) versions, with a count and one example: compliance
    checks a version pair once, whatever the number of GPUs reporting it. Two queries."""
    rows = list(Gpu.objects.visible_to(user).filter(node__site_id__in=site_ids)
                .exclude(driver_version="", cuda_driver_version="")
                .values("node__site_id", "driver_version", "cuda_driver_version")
                .annotate(n=Count("pk"), example=Min("pk")).order_by())
    return _version_groups([(r["node__site_id"], r["driver_version"], r["cuda_driver_version"], r["n"], r["example"])
                            for r in rows])


NODE_FIELDS = ("pk", "site_id", "hostname", "status", "last_seen_at", "last_error", "driver_version",
               "cuda_driver_version", "clock_offset_s")
NodeRow = namedtuple("NodeRow", NODE_FIELDS)


def _clock_off(offset_s: float | None) -> bool:
    return offset_s is not None and abs(offset_s) > settings.NODE_CLOCK_SKEW_TOLERANCE_S


def grouped_site_compliance(*, site: Site, nodes: list[NodeRow], endpoints: list[ServingEndpoint],
                            gpu_groups: list[GpuVersionGroup]) -> SiteCompliance:
    """`site_compliance` with the nodes checked once per distinct (driver, CUDA) pair: a pair whose checks all pass
    becomes one item counting its nodes ("1,100 nodes"), a drifting or unknown pair one item per node (listed by
    hostname, as before). The counts (ok / drift / unknown) are those of checking every node."""
    by_versions: dict[tuple[str, str], list[NodeRow]] = defaultdict(list)
    for n in nodes:
        by_versions[(n.driver_version, n.cuda_driver_version)].append(n)
    checked = site_compliance(site=site, nodes=[group[0] for group in by_versions.values()], gpus=[],
                              endpoints=endpoints, gpu_groups=gpu_groups)
    first_of = {group[0].pk: group for group in by_versions.values()}
    items: list[ItemCompliance] = []
    for item in checked.items:
        group = first_of.get(item.pk) if item.kind == "node" else None
        if group is None or len(group) == 1:
            items.append(item)
        elif item.state == OK:
            items.append(replace(item, label=f"{len(group):,} nodes (e.g. {item.label})", count=len(group)))
        else:
            items += [replace(item, pk=n.pk, label=n.hostname) for n in group]
    if any(i.kind == "node" for i in items):  # nodes by hostname first, as when each was checked on its own
        items.sort(key=lambda i: (i.kind != "node", i.label if i.kind == "node" else ""))
    return SiteCompliance(pinned=checked.pinned, items=items, unchecked=checked.unchecked)


def site_cards(*, user: User, site: Site | None = None, now: dt.datetime | None = None,
               live: bool = True) -> list[SiteCard]:
    """One card per visible site (or for `site` only), with its alerts. A fixed number of queries whatever the
    number of sites and GPUs — GPUs are counted and grouped in SQL, never loaded one by one — plus the card
    providers' (`live=False` leaves them out: chart JSON needs the sites, not the live figures)."""
    now = now or timezone.now()
    sites = Site.objects.visible_to(user).select_related("partner")
    if site is not None:
        sites = sites.filter(pk=site.pk)
    sites = list(sites)
    ids = [s.pk for s in sites]
    states, versions, latest = gpu_inventory(user=user, sites=sites, now=now)
    nodes_by_site: dict[int, list[NodeRow]] = defaultdict(list)
    # Plain tuples, not model instances: a 9,000-GPU site has 1,125 nodes, read on every 15-second refresh.
    for row in Node.objects.visible_to(user).filter(site_id__in=ids).order_by("hostname").values_list(*NODE_FIELDS):
        n = NodeRow(*row)
        nodes_by_site[n.site_id].append(n)
    endpoints_by_site: dict[int, list[ServingEndpoint]] = defaultdict(list)
    for e in ServingEndpoint.objects.visible_to(user).filter(site_id__in=ids):
        endpoints_by_site[e.site_id].append(e)
    milestones_by_site: dict[int, list[SiteMilestone]] = defaultdict(list)
    for m in SiteMilestone.objects.visible_to(user).filter(site_id__in=ids):
        milestones_by_site[m.site_id].append(m)

    cards = []
    for s in sites:
        counts = dict.fromkeys(GPU_STATES, 0)
        per_node: dict[str, dict[str, int]] = {}
        site_states = states.get(s.pk, {})
        for n in nodes_by_site[s.pk]:
            node_counts = site_states.get(n.pk, dict.fromkeys(GPU_STATES, 0))
            per_node[n.hostname] = node_counts
            for state in GPU_STATES:
                counts[state] += node_counts[state]
        endpoints = endpoints_by_site[s.pk]
        card = SiteCard(
            site=s, gpus=counts, nodes_total=len(nodes_by_site[s.pk]), endpoints_total=len(endpoints),
            endpoints_unhealthy=sum(1 for e in endpoints if e.health == EndpointHealth.UNHEALTHY),
            buildout=buildout_summary(milestones=milestones_by_site[s.pk], today=site_today(site=s, now=now)),
            compliance=grouped_site_compliance(site=s, nodes=nodes_by_site[s.pk], endpoints=endpoints,
                                               gpu_groups=versions.get(s.pk, [])),
            node_gpus=per_node, node_states=site_states, nodes=nodes_by_site[s.pk],
            shared={"gpu_latest": latest.get(s.pk)},
        )
        node_rows = [{"hostname": n.hostname, "status": n.status, "last_seen_at": n.last_seen_at,
                      "last_error": n.last_error, "clock_offset_s": n.clock_offset_s} for n in nodes_by_site[s.pk]
                     if n.status in (NodeStatus.STALE, NodeStatus.UNHEALTHY) or _clock_off(n.clock_offset_s)]
        endpoint_rows = [{"name": e.name, "health": e.health, "last_error": e.last_error} for e in endpoints]
        card.alerts = _site_alerts(card, node_rows, endpoint_rows, reverse("sites:site_detail", args=[s.slug]))
        cards.append(card)
    for provider in CARD_PROVIDERS.values() if live else ():
        provider(user=user, cards=cards, now=now)
    return cards


@dataclass(frozen=True)
class FleetTotals:
    sites: int
    gpus: dict[str, int]
    power_capacity_kw: Decimal
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def gpus_total(self) -> int:
        return sum(self.gpus.values())

    def values(self) -> dict[str, str]:
        return {
            "sites": str(self.sites),
            "gpus_total": str(self.gpus_total),
            **{f"gpus_{s}": str(self.gpus[s]) for s in GPU_STATES},
            "power_kw": f"{self.power_capacity_kw.normalize():,f} kW",
            **live_figure_texts(self.figures, capacity_kw=self.power_capacity_kw),
        }

    def fields(self) -> dict[str, str]:
        return {f"fleet-{k}": v for k, v in self.values().items()}


def fleet_figures(cards: list[SiteCard]) -> dict[str, float]:
    """Fleet utilization is the mean over reporting GPUs (sites weighted by their reporting GPUs); power and
    tokens/s are sums over the sites that reported them."""
    out: dict[str, float] = {}
    reporting = [c.figures for c in cards if c.figures.get("gpus_reporting") and "util_pct" in c.figures]
    if reporting:
        n = sum(f["gpus_reporting"] for f in reporting)
        out["util_pct"] = sum(f["util_pct"] * f["gpus_reporting"] for f in reporting) / n
    out["gpus_reporting"] = sum(c.figures.get("gpus_reporting", 0) for c in cards)
    for key in ("power_w", "tokens_per_s"):
        values = [c.figures[key] for c in cards if key in c.figures]
        if values:
            out[key] = sum(values)
    return out


def fleet_totals(*, cards: list[SiteCard]) -> FleetTotals:
    gpus = {state: sum(c.gpus[state] for c in cards) for state in GPU_STATES}
    return FleetTotals(sites=len(cards), gpus=gpus,
                       power_capacity_kw=sum((c.site.power_capacity_kw for c in cards), Decimal("0")),
                       figures=fleet_figures(cards))


def live_payload(*, cards: list[SiteCard], now: dt.datetime, refresh_s: int, fleet: bool) -> dict:
    """What the pages' live.js polls: field texts to set in place, stale keys, alerts, known site ids."""
    fields: dict[str, str] = {}
    stale: list[str] = []
    alerts: list[dict] = []
    for card in cards:
        fields |= card.fields()
        stale += card.stale_keys()
        alerts += [{"level": a.level, "text": a.text, "url": a.url} for a in card.alerts]
    if fleet:
        fields |= fleet_totals(cards=cards).fields()
    alerts.sort(key=lambda a: a["level"] != "bad")
    return {
        "updated_at": now.isoformat(),
        "refresh_s": refresh_s,
        "fields": fields,
        "stale": stale,
        "alerts": alerts,
        "site_ids": [c.site.pk for c in cards],
    }
