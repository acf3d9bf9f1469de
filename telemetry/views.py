"""Telemetry pages and their JSON: live figures on the site cards, fleet and site charts, the GPU and endpoint pages.

Thin: selectors read (every query through `visible_to(user)`), `telemetry/charts.py` turns rows into figures.
Another partner's site, GPU or endpoint answers 404; an anonymous fetch() gets 401 JSON; a malformed range 400.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from factory_portal.exceptions import ServiceError
from sites import dashboard, selectors
from sites.charts import OVERVIEW_CHARTS, SITE_CHARTS, ChartContext, register
from sites.choices import NodeStatus
from sites.dashboard import Alert, SiteCard
from sites.models import Gpu, Node, ServingEndpoint, Site
from sites.views import _json_login_required, _time_range, dashboard_context, dashboard_refresh_s
from telemetry import charts, gpu_selectors, metering_selectors
from telemetry.charts import throttle_reason_names

HOUR = dt.timedelta(hours=1)
GAUGE_WINDOW = dt.timedelta(hours=1)


# --- Live figures of the site cards (registered with sites.dashboard at start-up) -------------------------------

def telemetry_card_provider(*, user, cards: list[SiteCard], now: dt.datetime) -> None:
    """Utilization, power drawn and tokens/s of each card, and the over-power / under-target alerts. 2 queries (3 for
    cards without the inventory's latest readings)."""
    if not cards:
        return
    sites = [c.site for c in cards]
    ids = [s.pk for s in sites]
    # The GPUs' latest readings came with the cards' inventory scan (`sites.dashboard.gpu_inventory`); cards built
    # without it read them here.
    if all("gpu_latest" in c.shared for c in cards):
        gpu_now = {c.site.pk: c.shared["gpu_latest"] for c in cards if c.shared["gpu_latest"]}
    else:
        gpu_now = gpu_selectors.sites_gpu_now(user=user, sites=sites, now=now)
    util_hour = gpu_selectors.sites_util_mean(user=user, site_ids=ids, start=now - HOUR, end=now)
    usage_now = metering_selectors.endpoints_usage_now(user=user, site_ids=ids, now=now)
    tokens: dict[int, float] = {}
    for e in usage_now.values():
        tokens[e["site_id"]] = tokens.get(e["site_id"], 0.0) + e["tokens_per_s"]
    for card in cards:
        site = card.site
        # The site page's endpoint table of the same request reads the same figures (`_site_tables`).
        card.shared["endpoint_usage"] = {pk: u for pk, u in usage_now.items() if u["site_id"] == site.pk}
        live = gpu_now.get(site.pk)
        if live:
            card.figures["gpus_reporting"] = live["gpus_reporting"]
            if live["util_mean_pct"] is not None:
                card.figures["util_pct"] = live["util_mean_pct"]
            if live["power_w"] is not None:
                card.figures["power_w"] = live["power_w"]
        if site.pk in tokens:
            card.figures["tokens_per_s"] = tokens[site.pk]
        url = card.alerts[0].url if card.alerts else f"/sites/{site.slug}/"
        power_w = card.figures.get("power_w")
        if power_w is not None:
            facility_kw = Decimal(str(power_w)) / 1000 * site.pue
            if facility_kw > site.power_capacity_kw:
                card.alerts.append(Alert("bad", f"{site.name} draws ≈ {facility_kw:,.0f} kW (GPUs × PUE {site.pue}), "
                                                f"over its contracted {site.power_capacity_kw.normalize():,f} kW",
                                         url, site.pk))
        hour = util_hour.get(site.pk)
        if hour is not None and hour < site.utilization_target_pct:
            card.alerts.append(Alert("warn", f"{site.name} ran at {hour:.0f} % GPU utilization over the last hour, "
                                             f"below its {site.utilization_target_pct} % target", url, site.pk))


dashboard.register_card_provider("telemetry", telemetry_card_provider)


# --- Fleet charts (overview) and site charts ------------------------------------------------------------------

def _named(sites: list[Site], per_site: dict[int, list]) -> list[tuple[str, list]]:
    return [(s.name, per_site.get(s.pk, [])) for s in sites]


@register(OVERVIEW_CHARTS, "utilization", cards=False)
def overview_utilization(ctx: ChartContext) -> dict:
    rows = gpu_selectors.sites_gpu_buckets(user=ctx.user, site_ids=[s.pk for s in ctx.sites], now=ctx.now,
                                           start=ctx.time_range.start, end=ctx.time_range.end)
    return charts.fleet_utilization_figure(sites=_named(ctx.sites, rows), time_zone="UTC")


@register(OVERVIEW_CHARTS, "power", cards=False)
def overview_power(ctx: ChartContext) -> dict:
    rows = gpu_selectors.sites_gpu_buckets(user=ctx.user, site_ids=[s.pk for s in ctx.sites], now=ctx.now,
                                           start=ctx.time_range.start, end=ctx.time_range.end)
    return charts.fleet_power_figure(sites=_named(ctx.sites, rows), time_zone="UTC")


@register(OVERVIEW_CHARTS, "tokens", cards=False)
def overview_tokens(ctx: ChartContext) -> dict:
    rows = metering_selectors.usage_buckets(user=ctx.user, start=ctx.time_range.start, end=ctx.time_range.end,
                                            by=("site_id",), site_ids=[s.pk for s in ctx.sites])
    per_site: dict[int, list] = {}
    for r in rows:
        per_site.setdefault(r["site_id"], []).append(r)
    return charts.tokens_figure(groups=_named(ctx.sites, per_site), time_zone="UTC",
                                empty_message="No tokens metered in this range: register the serving endpoints.")


@register(SITE_CHARTS, "heatmap", cards=False)
def site_heatmap(ctx: ChartContext) -> dict:
    site = ctx.sites[0]
    heatmap = gpu_selectors.site_gpu_heatmap_binned(user=ctx.user, site=site, start=ctx.time_range.start,
                                                    end=ctx.time_range.end, now=ctx.now)
    return charts.heatmap_figure(heatmap=heatmap, time_zone=site.time_zone, target_pct=site.utilization_target_pct)


@register(SITE_CHARTS, "power", cards=False)
def site_power(ctx: ChartContext) -> dict:
    site = ctx.sites[0]
    rows = gpu_selectors.sites_gpu_buckets(user=ctx.user, site_ids=[site.pk], start=ctx.time_range.start,
                                           end=ctx.time_range.end, now=ctx.now)[site.pk]
    return charts.power_energy_figure(rows=rows, capacity_kw=float(site.power_capacity_kw), pue=float(site.pue),
                                      time_zone=site.time_zone)


def _by_endpoint(ctx: ChartContext) -> tuple[Site, list[tuple[str, list]]]:
    site = ctx.sites[0]
    rows = metering_selectors.usage_buckets(user=ctx.user, start=ctx.time_range.start, end=ctx.time_range.end,
                                            by=("endpoint_id",), site_ids=[site.pk])
    names = dict(ServingEndpoint.objects.visible_to(ctx.user).filter(site=site).values_list("pk", "name"))
    groups: dict[int, list] = {}
    for r in rows:
        groups.setdefault(r["endpoint_id"], []).append(r)
    return site, [(names.get(pk, str(pk)), g) for pk, g in sorted(groups.items())]


@register(SITE_CHARTS, "tokens", cards=False)
def site_tokens(ctx: ChartContext) -> dict:
    site, groups = _by_endpoint(ctx)
    return charts.tokens_figure(groups=groups, time_zone=site.time_zone,
                                empty_message="No tokens metered in this range: register the serving endpoints.")


@register(SITE_CHARTS, "latency", cards=False)
def site_latency(ctx: ChartContext) -> dict:
    site, groups = _by_endpoint(ctx)
    return charts.latency_figure(groups=groups, time_zone=site.time_zone)


# --- Shared ------------------------------------------------------------------------------------------------------

def _parse_range(request: HttpRequest, time_zone: str):
    try:
        return _time_range(request, time_zone), None
    except ServiceError as e:
        return None, JsonResponse({"detail": e.message}, status=400)


def _figure_response(figure: dict, *, now: dt.datetime, time_range) -> JsonResponse:
    return JsonResponse({**figure, "updated_at": now.isoformat(), "range": time_range.as_json()})


def _age_text(ts: dt.datetime | None, now: dt.datetime) -> str:
    if ts is None:
        return "never"
    seconds = max(0, int((now - ts).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


class _NodeRow:
    """The node table's columns without a model instance (the live JSON of a 1,125-node site reads them all)."""

    __slots__ = ("pk", "hostname", "status", "last_seen_at", "driver_version", "clock_offset_s")
    _labels = dict(NodeStatus.choices)

    def __init__(self, pk, hostname, status, last_seen_at, driver_version, clock_offset_s) -> None:
        self.pk, self.hostname, self.status = pk, hostname, status
        self.last_seen_at, self.driver_version, self.clock_offset_s = last_seen_at, driver_version, clock_offset_s

    def get_status_display(self) -> str:
        return str(self._labels.get(self.status, self.status))


# The node table lists every problem node and, up to this many rows, the first healthy ones (a 1,125-node site
# rendered 1,125 rows and refreshed 3,400 cells every 15 s); "show all nodes" (`?nodes=all`) lists them all.
NODE_TABLE_ROWS = 50
_PROBLEM_STATUSES = {NodeStatus.STALE, NodeStatus.UNHEALTHY, NodeStatus.PENDING}


def _site_tables(*, user, site: Site, now: dt.datetime, light: bool = False, all_nodes: bool = False,
                 node_states: dict[int, dict[str, int]] | None = None, card: SiteCard | None = None) -> dict:
    """Per-node staleness (GPUs counted per node in SQL) and per-endpoint tokens/latency for the site page (and its
    live JSON). Unless `all_nodes`, the node rows are the problem nodes first (all of them), then healthy ones by
    hostname up to `NODE_TABLE_ROWS`; `nodes_total` / `nodes_hidden` say how many there are and are not.

    `card`: the site's card of the same request (at the same `now`): its GPU counts per node, node rows and endpoint
    usage are reused instead of read again (2 queries instead of 4 at 1,125 nodes). Rows are built only for the
    nodes the table shows."""
    from sites.dashboard import STALE_AFTER_POLLS, node_gpu_states

    stale_after = dt.timedelta(seconds=STALE_AFTER_POLLS * site.gpu_poll_interval_s)
    if card is not None:
        node_states = card.node_states
    # The site card's counts at the same `now` when the view has them (one grouped count over the GPUs, not two).
    states = node_states if node_states is not None else node_gpu_states(user=user, sites=[site], now=now).get(
        site.pk, {})
    fields = ("pk", "hostname", "status", "last_seen_at", "driver_version", "clock_offset_s")
    if card is not None:
        nodes = [_NodeRow(n.pk, n.hostname, n.status, n.last_seen_at, n.driver_version, n.clock_offset_s)
                 for n in card.nodes]
    else:
        node_qs = Node.objects.visible_to(user).filter(site=site).order_by("hostname")
        nodes = [_NodeRow(*row) for row in node_qs.values_list(*fields)] if light else list(node_qs.only(*fields))
    nodes.sort(key=lambda n: n.hostname)
    tolerance = settings.NODE_CLOCK_SKEW_TOLERANCE_S
    empty: dict[str, int] = {}
    # (node, GPUs, online, stale, problem) for every node: cheap tuples; the table's row dicts only for shown ones.
    summary = []
    for node in nodes:
        counts = states.get(node.pk, empty)
        gpus, online = sum(counts.values()), counts.get("online", 0)
        stale = node.last_seen_at is None or now - node.last_seen_at > stale_after
        problem = (stale or node.status in _PROBLEM_STATUSES or online < gpus
                   or (node.clock_offset_s is not None and abs(node.clock_offset_s) > tolerance))
        summary.append((node, gpus, online, stale, problem))
    gpus = sum(r[1] for r in summary)
    nodes_total = len(summary)
    if not all_nodes and nodes_total > NODE_TABLE_ROWS:
        problems = [r for r in summary if r[4]]
        healthy = [r for r in summary if not r[4]]
        summary = problems + healthy[:max(0, NODE_TABLE_ROWS - len(problems))]
    node_rows = [{"node": node, "gpus": n_gpus, "online": online, "stale": stale,
                  "age": _age_text(node.last_seen_at, now), **_clock_cell(node.clock_offset_s)}
                 for node, n_gpus, online, stale, _ in summary]
    usage = card.shared["endpoint_usage"] if card is not None and "endpoint_usage" in card.shared else \
        metering_selectors.endpoints_usage_now(user=user, site_ids=[site.pk], now=now)
    endpoint_rows = []
    for ep in ServingEndpoint.objects.visible_to(user).filter(site=site).order_by("name"):
        u = usage.get(ep.pk)
        endpoint_rows.append({
            "endpoint": ep,
            "tokens": f"{u['tokens_per_s']:,.0f} tokens/s" if u else "no recent scrape",
            "ttft": _ms(u and u["ttft_mean_s"]), "itl": _ms(u and u["itl_mean_s"]),
            "age": _age_text(ep.last_scraped_at, now), "stale": u is None,
        })
    heatmap_note = ""
    if gpus > gpu_selectors.HEATMAP_MAX_ROWS:
        heatmap_note = (f"{gpus:,} GPUs: one row per node, the mean of its GPUs" if nodes_total <=
                        gpu_selectors.HEATMAP_MAX_ROWS else f"{gpus:,} GPUs: one row per group of nodes")
    return {"node_rows": node_rows, "nodes_total": nodes_total, "nodes_hidden": nodes_total - len(node_rows),
            "node_table_rows": NODE_TABLE_ROWS,
            "endpoint_rows": endpoint_rows, "heatmap_note": heatmap_note}


def _clock_cell(offset_s: float | None) -> dict:
    """The node's last measured clock offset, flagged above the tolerance (its readings are being re-timed)."""
    from django.conf import settings

    if offset_s is None:
        return {"clock": "—", "clock_skewed": False}
    return {"clock": f"{offset_s:+.1f} s", "clock_skewed": abs(offset_s) > settings.NODE_CLOCK_SKEW_TOLERANCE_S}


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:,.0f} ms"


def site_table_fields(*, user, site: Site, now: dt.datetime, all_nodes: bool = False,
                      node_states: dict[int, dict[str, int]] | None = None,
                      card: SiteCard | None = None) -> tuple[dict[str, str], list[str]]:
    """The live-updated cells of the site page's node and endpoint tables (`data-live` keys), and stale keys: the
    rows the page lists (problem nodes and the first healthy ones, or all with `all_nodes`). A node that turns stale
    after the page loaded is named by the site's alerts on the same refresh (they cover every node)."""
    tables = _site_tables(user=user, site=site, now=now, light=True, all_nodes=all_nodes, node_states=node_states,
                          card=card)
    fields, stale = {}, []
    for r in tables["node_rows"]:
        p = f"node-{r['node'].pk}"
        fields |= {f"{p}-age": r["age"], f"{p}-online": f"{r['online']}/{r['gpus']}",
                   f"{p}-status": r["node"].get_status_display()}
        if r["stale"]:
            stale.append(f"{p}-age")
    for r in tables["endpoint_rows"]:
        p = f"endpoint-{r['endpoint'].pk}"
        fields |= {f"{p}-tokens": r["tokens"], f"{p}-ttft": r["ttft"], f"{p}-itl": r["itl"], f"{p}-age": r["age"],
                   f"{p}-health": r["endpoint"].get_health_display()}
        if r["stale"]:
            stale += [f"{p}-tokens", f"{p}-ttft", f"{p}-itl"]
    return fields, stale


dashboard.SITE_PAGE_PROVIDERS["telemetry"] = lambda *, user, site, now, all_nodes=False, node_states=None, card=None: (
    _site_tables(user=user, site=site, now=now, all_nodes=all_nodes, node_states=node_states, card=card))
dashboard.SITE_FIELDS_PROVIDERS["telemetry"] = site_table_fields


# --- GPU page -------------------------------------------------------------------------------------------------------

GPU_READINGS = [
    # key, label, sample field, formatter
    ("util", "GPU utilization", "util_pct", lambda v: f"{v} %"),
    ("memory_util", "Memory bandwidth utilization", "memory_util_pct", lambda v: f"{v} %"),
    ("memory_used", "Memory used", "memory_used_bytes", lambda v: f"{v / 2**30:,.1f} GiB"),
    ("power", "Power draw", "power_w", lambda v: f"{v:,.0f} W"),
    ("energy_counter", "Energy counter (since driver load)", "energy_mj", lambda v: f"{v / 3.6e9:,.3f} kWh"),
    ("temperature", "Temperature", "temperature_c", lambda v: f"{v} °C"),
    ("sm_clock", "SM clock", "sm_clock_mhz", lambda v: f"{v:,} MHz"),
    ("mem_clock", "Memory clock", "mem_clock_mhz", lambda v: f"{v:,} MHz"),
    ("throttle", "Clocks held back by", "throttle_reasons",
     lambda v: ", ".join(throttle_reason_names(v)) or "nothing (full clocks)"),
    ("ecc", "Uncorrected ECC errors", "ecc_uncorrected_errors", lambda v: f"{v:,}"),
    ("retired_pending", "Retired pages pending", "retired_pages_pending", lambda v: "yes" if v else "no"),
    ("remapped", "Uncorrectable remapped rows", "remapped_rows_uncorrectable", lambda v: f"{v:,}"),
]


def gpu_reading_texts(*, sample, gpu: Gpu) -> dict[str, str]:
    """Reading texts of the GPU page. NULL is "not supported (reason)" when NVML said so, "not reported"
    otherwise — never 0 — and every reading says "no reading" when nothing arrived in the last 10 minutes."""
    out = {}
    unsupported = (sample.unsupported or {}) if sample is not None else {}
    for key, _, attr, fmt in GPU_READINGS:
        if sample is None:
            out[key] = "no reading in the last 10 min"
            continue
        value = getattr(sample, attr)
        if value is not None:
            out[key] = fmt(value)
        elif attr in unsupported:
            out[key] = f"not supported ({unsupported[attr]})"
        else:
            out[key] = "not reported"
    if sample is not None and sample.memory_used_bytes is not None and gpu.memory_total_bytes:
        out["memory_used"] += f" of {gpu.memory_total_bytes / 2**30:,.0f} GiB"
    out["status"] = gpu.get_status_display()
    out["last_error"] = gpu.last_error or "—"
    out["reading_at"] = sample.ts.strftime("%Y-%m-%d %H:%M:%S UTC") if sample is not None else "none recently"
    return out


def _gpu(request: HttpRequest, slug: str, pk: int) -> tuple[Site, Gpu]:
    site = selectors.site_get(user=request.user, slug=slug)  # 404 for another partner's site
    gpu = get_object_or_404(Gpu.objects.visible_to(request.user).select_related("node"), node__site=site, pk=pk)
    return site, gpu


def _gpu_payload(request: HttpRequest, site: Site, gpu: Gpu, now: dt.datetime, time_range) -> dict:
    sample = gpu_selectors.gpu_latest_sample(user=request.user, gpu=gpu, now=now)
    texts = gpu_reading_texts(sample=sample, gpu=gpu)
    energy = gpu_selectors.gpu_energy_j(user=request.user, gpu=gpu, start=time_range.start, end=time_range.end)
    if energy["energy_j"] is None:
        texts["energy_range"] = "no energy information"
    else:
        texts["energy_range"] = f"{energy['energy_j'] / Decimal(3_600_000):,.3f} kWh" + (
            " (estimated from power)" if energy["estimated"] else "")
    state = dashboard.gpu_state(status=gpu.status, last_seen_at=gpu.last_seen_at,
                                poll_interval_s=site.gpu_poll_interval_s, now=now)
    texts["state"] = state
    fields = {f"gpu-{k}": v for k, v in texts.items()}
    stale = [f"gpu-{k}" for k, *_ in GPU_READINGS] if sample is None or state == "stale" else []
    return {"updated_at": now.isoformat(), "refresh_s": dashboard_refresh_s(), "fields": fields, "stale": stale,
            "alerts": [], "site_ids": []}


@login_required
def gpu_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    site, gpu = _gpu(request, slug, pk)
    now = timezone.now()
    context = dashboard_context(request, time_zone=site.time_zone, now=now)
    payload = _gpu_payload(request, site, gpu, now, context["time_range"])
    texts = {k.removeprefix("gpu-"): v for k, v in payload["fields"].items()}
    readings = [(k, label, texts[k], f"gpu-{k}" in payload["stale"]) for k, label, *_ in GPU_READINGS]
    context |= {"site": site, "gpu": gpu, "updated_at": now, "texts": texts, "readings": readings,
                "mig_devices": list(gpu.mig_devices.all())}
    return render(request, "telemetry/gpu_detail.html", context)


@_json_login_required
def gpu_live(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    site, gpu = _gpu(request, slug, pk)
    time_range, error = _parse_range(request, site.time_zone)
    if error:
        return error
    return JsonResponse(_gpu_payload(request, site, gpu, timezone.now(), time_range))


GPU_CHARTS = {"util": charts.gpu_util_figure, "power": charts.gpu_power_figure,
              "memory": charts.gpu_memory_temperature_figure}


@_json_login_required
def gpu_chart(request: HttpRequest, slug: str, pk: int, name: str) -> HttpResponse:
    site, gpu = _gpu(request, slug, pk)
    if name not in GPU_CHARTS:
        raise Http404("No such chart.")
    time_range, error = _parse_range(request, site.time_zone)
    if error:
        return error
    rows = gpu_selectors.gpu_buckets(user=request.user, gpu=gpu, start=time_range.start, end=time_range.end)
    return _figure_response(GPU_CHARTS[name](rows=rows, time_zone=site.time_zone), now=timezone.now(),
                            time_range=time_range)


# --- Endpoint page --------------------------------------------------------------------------------------------------

def _endpoint(request: HttpRequest, slug: str, pk: int) -> tuple[Site, ServingEndpoint]:
    site = selectors.site_get(user=request.user, slug=slug)
    endpoint = get_object_or_404(ServingEndpoint.objects.visible_to(request.user), site=site, pk=pk)
    return site, endpoint


def _endpoint_payload(request: HttpRequest, site: Site, endpoint: ServingEndpoint, now: dt.datetime,
                      time_range) -> dict:
    usage = metering_selectors.endpoints_usage_now(user=request.user, site_ids=[site.pk], now=now).get(endpoint.pk)
    rows = metering_selectors.usage_buckets(user=request.user, start=time_range.start, end=time_range.end,
                                            by=("model",), endpoint_id=endpoint.pk)
    totals: dict[str, dict] = {}
    for r in rows:
        t = totals.setdefault(r["model"], {"prompt_tokens": 0, "generation_tokens": 0, "requests_ok": 0,
                                            "requests_failed": 0})
        for k in t:
            t[k] += r[k]
    gauges = metering_selectors.series_latest(user=request.user, endpoint_id=endpoint.pk)
    fields = {
        "endpoint-health": endpoint.get_health_display(),
        "endpoint-last_error": endpoint.last_error or "—",
        "endpoint-age": _age_text(endpoint.last_scraped_at, now),
        "endpoint-tokens": f"{usage['tokens_per_s']:,.0f} tokens/s" if usage else "no recent scrape",
        "endpoint-ttft": _ms(usage and usage["ttft_mean_s"]),
        "endpoint-itl": _ms(usage and usage["itl_mean_s"]),
        "endpoint-running": _sum_text(g["running"] for g in gauges),
        "endpoint-waiting": _sum_text(g["waiting"] for g in gauges),
        "endpoint-kv": _max_pct_text(g["kv_cache_usage"] for g in gauges),
    }
    stale = [] if usage else ["endpoint-tokens", "endpoint-ttft", "endpoint-itl"]
    return {"updated_at": now.isoformat(), "refresh_s": dashboard_refresh_s(), "fields": fields, "stale": stale,
            "alerts": [], "site_ids": [], "models": totals, "gauges": gauges}


def _sum_text(values) -> str:
    known = [v for v in values if v is not None]
    return f"{sum(known):,.0f}" if known else "not exposed"


def _max_pct_text(values) -> str:
    known = [v for v in values if v is not None]
    return f"{max(known) * 100:.0f} %" if known else "not exposed"


@login_required
def endpoint_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    site, endpoint = _endpoint(request, slug, pk)
    now = timezone.now()
    context = dashboard_context(request, time_zone=site.time_zone, now=now)
    payload = _endpoint_payload(request, site, endpoint, now, context["time_range"])
    texts = {k.removeprefix("endpoint-"): v for k, v in payload["fields"].items()}
    context |= {"site": site, "endpoint": endpoint, "updated_at": now, "texts": texts,
                "stale_keys": payload["stale"], "models": sorted(payload["models"].items()),
                "gauges": payload["gauges"], "scrape_interval_s": settings.ENGINE_SCRAPE_INTERVAL_S}
    return render(request, "telemetry/endpoint_detail.html", context)


@_json_login_required
def endpoint_live(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    site, endpoint = _endpoint(request, slug, pk)
    time_range, error = _parse_range(request, site.time_zone)
    if error:
        return error
    payload = _endpoint_payload(request, site, endpoint, timezone.now(), time_range)
    payload.pop("models"), payload.pop("gauges")
    return JsonResponse(payload)


@_json_login_required
def endpoint_chart(request: HttpRequest, slug: str, pk: int, name: str) -> HttpResponse:
    site, endpoint = _endpoint(request, slug, pk)
    if name not in ("tokens", "requests", "latency", "gauges", "health"):
        raise Http404("No such chart.")
    time_range, error = _parse_range(request, site.time_zone)
    if error:
        return error
    now, tz, user = timezone.now(), site.time_zone, request.user
    start, end = time_range.start, time_range.end
    if name == "gauges":
        rows = metering_selectors.endpoint_gauge_buckets(user=user, endpoint_id=endpoint.pk,
                                                         start=max(start, end - GAUGE_WINDOW), end=end)
        figure = charts.gauges_figure(rows=rows, time_zone=tz)
    elif name == "health":
        rows = metering_selectors.endpoint_scrape_buckets(user=user, endpoint_id=endpoint.pk, start=start, end=end)
        expected = rows[0]["seconds"] / settings.ENGINE_SCRAPE_INTERVAL_S if rows else None
        figure = charts.health_figure(rows=rows, time_zone=tz, expected=expected)
    else:
        by = ("model",) if name == "tokens" else ()
        rows = metering_selectors.usage_buckets(user=user, start=start, end=end, by=by, endpoint_id=endpoint.pk)
        if name == "tokens":
            models: dict[str, list] = {}
            for r in rows:
                models.setdefault(r["model"], []).append(r)
            figure = charts.model_tokens_figure(models=sorted(models.items()), time_zone=tz)
        elif name == "requests":
            figure = charts.requests_figure(rows=rows, time_zone=tz)
        else:
            figure = charts.latency_figure(groups=[(endpoint.name, rows)], time_zone=tz)
    return _figure_response(figure, now=now, time_range=time_range)
