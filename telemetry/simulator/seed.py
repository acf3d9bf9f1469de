"""`seed_demo`: the demo partner "Demo Capital", its sites, SIMULATED nodes/GPUs/endpoints, tenants, price plans,
and a month of back-filled history written through the portal's own services.

This module composes every app (sites, telemetry, tenants), like the pages at the top of DESIGN.md §3; only the
`seed_demo` and `bootstrap` commands import it, never the portal's apps.

History is written as raw facts through the real write paths and then rolled up by the real rollup services:
GPU samples at 1-minute resolution through `gpu_samples_write` (COPY on PostgreSQL), engine pages of the
simulated engines at 5-minute intervals through the real parser and `scrape_outcomes_record` (snapshots and
reset-aware usage deltas), then `gpu_rollups_run` until it has caught up and `usage_rollup`. Everything is
idempotent: a second run finds what exists and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from sites.buildout import milestone_update
from sites.choices import MilestoneKind, PartnerRole, SiteStatus
from sites.models import Gpu, Membership, Node, Partner, ServingEndpoint, Site, SiteMilestone
from sites.services import endpoint_save, partner_create, site_save
from telemetry import rollups
from telemetry.collectors import engines as engine_parsers
from telemetry.collectors.nvml import SOURCE_SIMULATED, NvmlReader
from telemetry.gpu_services import gpu_report_ingest
from telemetry.ingest import gpu_samples_write, sample_row
from telemetry.metering_services import EndpointOutcome, scrape_outcomes_record, usage_rollup
from telemetry.models import GpuSample, RollupWatermark
from telemetry.models.metering import EngineSeries
from telemetry.simulator import demo
from telemetry.simulator.gpus import SimulatedGpu, SimulatedGpuReader
from tenants.choices import TenantRole, TenantStatus
from tenants.metering import tenant_usage_refresh
from tenants.models import Allocation, AttributionRule, PricePlan, Tenant, TenantMembership
from tenants.services import (
    allocation_create,
    attribution_rule_save,
    price_plan_save,
    tenant_approve,
    unique_tenant_slug,
)

PARTNER_NAME = "Demo Capital"
USERNAMES = ("demo-operator", "demo-viewer", "acme-admin", "globex-admin")
HISTORY_DAYS = 30
# Full resolution for the last week (the raw-sample retention window: what a real install still holds raw);
# coarser before, which keeps the seed near a minute on 2 cores. Rollups are exact at any resolution (energy
# comes from counter deltas, tokens from cumulative counters).
RECENT_DAYS = 7
GPU_STEP_S = 60
GPU_STEP_OLDER_S = 300
USAGE_STEP_S = 300
USAGE_STEP_OLDER_S = 900

SITES: dict[str, dict] = {
    "osl": {
        "name": "Oslo Fjord AI Factory", "country": "NO", "city": "Oslo", "time_zone": "Europe/Oslo",
        "status": SiteStatus.LIVE, "contract_days_ago": 160, "power_capacity_kw": Decimal("1200"),
        "pue": Decimal("1.12"), "electricity_price_per_kwh": Decimal("0.05200"), "capex_per_gpu": Decimal("32000"),
        "opex_per_gpu_hour": Decimal("0.35000"), "baseline_driver_version": "570.133.20",
        "baseline_cuda_version": "12.8", "baseline_engine_versions": {"vllm": "0.8.5", "sglang": "0.4.6",
                                                                      "tgi": "3.2.3"},
    },
    "aus": {
        "name": "Austin Ridge AI Factory", "country": "US", "city": "Austin", "time_zone": "America/Chicago",
        "status": SiteStatus.BURN_IN, "contract_days_ago": 68, "power_capacity_kw": Decimal("2500"),
        "pue": Decimal("1.38"), "electricity_price_per_kwh": Decimal("0.07800"), "capex_per_gpu": Decimal("9500"),
        "opex_per_gpu_hour": Decimal("0.18000"), "baseline_driver_version": "570.133.20",
        "baseline_cuda_version": "12.8", "baseline_engine_versions": {},
    },
}
# Build-out: days after the contract each milestone was done (None: still open).
MILESTONES_DONE: dict[str, dict[str, int | None]] = {
    "osl": {MilestoneKind.POWER_SECURED: 12, MilestoneKind.HARDWARE_DELIVERED: 38, MilestoneKind.RACKED: 51,
            MilestoneKind.NETWORK: 59, MilestoneKind.BURN_IN: 77, MilestoneKind.FIRST_TOKENS: 92},
    "aus": {MilestoneKind.POWER_SECURED: 15, MilestoneKind.HARDWARE_DELIVERED: 38, MilestoneKind.RACKED: 52,
            MilestoneKind.NETWORK: 61, MilestoneKind.BURN_IN: None, MilestoneKind.FIRST_TOKENS: None},
}
PRICE_PLANS: dict[str, list[dict]] = {
    "Standard": [
        {"model": "meta-llama/Llama-3.1-70B-Instruct", "input_price_per_mtok": Decimal("0.60"),
         "output_price_per_mtok": Decimal("0.80")},
        {"model": "Qwen/Qwen2.5-32B-Instruct", "input_price_per_mtok": Decimal("0.30"),
         "output_price_per_mtok": Decimal("0.45")},
        {"model": "mistralai/Mistral-7B-Instruct-v0.3", "input_price_per_mtok": Decimal("0.10"),
         "output_price_per_mtok": Decimal("0.15")},
        {"model": "*", "input_price_per_mtok": Decimal("0.50"), "output_price_per_mtok": Decimal("0.75")},
    ],
    "Globex volume 2025": [
        {"model": "Qwen/Qwen2.5-32B-Instruct", "input_price_per_mtok": Decimal("0.25"),
         "output_price_per_mtok": Decimal("0.38")},
        {"model": "mistralai/Mistral-7B-Instruct-v0.3", "input_price_per_mtok": Decimal("0.08"),
         "output_price_per_mtok": Decimal("0.12")},
        {"model": "*", "input_price_per_mtok": Decimal("0.45"), "output_price_per_mtok": Decimal("0.70")},
    ],
}
# tenant → (price plan, GPUs held as (hostname, index), endpoints held, attribution rules (endpoint, label, value))
TENANTS: dict[str, dict] = {
    "Acme": {
        "admin": "acme-admin", "email": "admin@acme.example", "plan": "Standard",
        "gpus": [("demo-osl-h100-01", i) for i in range(4)],
        "endpoints": ["acme-llama-70b", "shared-qwen-32b"],
        "rules": [("acme-llama-70b", "", ""), ("shared-qwen-32b", "tenant_id", "acme")],
    },
    "Globex": {
        "admin": "globex-admin", "email": "admin@globex.example", "plan": "Globex volume 2025",
        "gpus": [("demo-osl-h100-02", 0), ("demo-osl-h100-02", 1)],
        "endpoints": ["shared-qwen-32b", "globex-mistral-7b"],
        "rules": [("globex-mistral-7b", "", ""), ("shared-qwen-32b", "tenant_id", "globex")],
    },
}


@dataclass
class SeedResult:
    new_logins: dict[str, str] = field(default_factory=dict)  # username → password, only for users created now
    gpu_samples: int = 0
    usage_deltas: int = 0
    backfilled: bool = False
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def _floor(value: dt.datetime, step_s: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(value.timestamp() // step_s * step_s, tz=dt.UTC)


def _user(username: str, password: str, result: SeedResult):
    users = get_user_model().objects
    user = users.filter(username=username).first()
    if user is None:
        user = users.create_user(username=username, email=f"{username}@demo.invalid", password=password)
        result.new_logins[username] = password
    return user


def _site(partner: Partner, key: str, today: dt.date) -> Site:
    spec = dict(SITES[key])
    existing = Site.objects.filter(partner=partner, name=spec["name"]).first()
    if existing is not None:
        return existing
    contract = today - dt.timedelta(days=spec.pop("contract_days_ago"))
    site = site_save(site=Site(partner=partner, contract_date=contract, currency="USD", amortization_months=48,
                               utilization_target_pct=70, gpu_poll_interval_s=10, **spec))
    for milestone in SiteMilestone.objects.filter(site=site):
        done_after = MILESTONES_DONE[key].get(milestone.kind)
        if done_after is not None:
            milestone_update(milestone=milestone, name=milestone.name, planned_date=milestone.planned_date,
                             done_date=contract + dt.timedelta(days=done_after))
    return site


def _inventory(partner: Partner, sites: dict[str, Site], now: dt.datetime) -> tuple[dict[str, Node], bool]:
    """Nodes and their GPUs (created by ingesting one simulated reading at `now`: the GPUs come out flagged
    simulated) and the endpoints. Returns the nodes and whether their GPUs had no samples before."""
    nodes: dict[str, Node] = {}
    fresh = True
    for spec in demo.NODES:
        node, _ = Node.objects.get_or_create(hostname=spec.hostname, defaults={"site": sites[spec.site_key]})
        nodes[spec.hostname] = node
        uuids = [s.uuid for s in demo.gpu_specs_of(spec.hostname)]
        if GpuSample.objects.filter(gpu__uuid__in=uuids).exists():
            fresh = False
            continue
        reading = SimulatedGpuReader(spec.hostname, demo.gpu_specs_of(spec.hostname), clock=now.timestamp).read()
        gpu_report_ingest(node_id=node.pk, report=reading, now=now)
    for e in demo.ENGINES:
        if ServingEndpoint.objects.filter(site=sites[e.site_key], name=e.name).exists():
            continue
        endpoint_save(endpoint=ServingEndpoint(
            site=sites[e.site_key], node=nodes[e.node_hostname], name=e.name, engine=e.kind,
            metrics_url=demo.engine_url(e.name), served_model=e.models[0], simulated=True,
            engine_version=sites[e.site_key].baseline_engine_versions.get(e.kind, ""),
        ))
    return nodes, fresh


def _tenants(partner: Partner, operator, start: dt.datetime, result: SeedResult, password: str) -> None:
    plans: dict[str, PricePlan] = {}
    for name, rates in PRICE_PLANS.items():
        plan = PricePlan.objects.filter(partner=partner, name=name).first()
        if plan is None:
            plan = price_plan_save(plan=PricePlan(partner=partner, name=name, currency="USD",
                                                  effective_from=start.date()), by=operator, rates=rates)
        plans[name] = plan
    endpoints = {e.name: e for e in ServingEndpoint.objects.filter(site__partner=partner)}
    for name, spec in TENANTS.items():
        tenant = Tenant.objects.filter(partner=partner, name=name).first()
        if tenant is None:
            tenant = Tenant.objects.create(partner=partner, name=name, slug=unique_tenant_slug(name=name),
                                           contact_email=spec["email"], email_confirmed_at=start)
        admin = _user(spec["admin"], password, result)
        TenantMembership.objects.get_or_create(user=admin, tenant=tenant, defaults={"role": TenantRole.ADMIN})
        if tenant.status == TenantStatus.PENDING:
            tenant = tenant_approve(tenant=tenant, by=operator, reason="Demo tenant (simulated usage)",
                                    price_plan=plans[spec["plan"]])
        if not Allocation.objects.filter(tenant=tenant).exists():
            for hostname, index in spec["gpus"]:
                gpu = Gpu.objects.get(node__hostname=hostname, index=index)
                allocation_create(tenant=tenant, by=operator, gpu=gpu, starts_at=start, note="demo")
            for endpoint_name in spec["endpoints"]:
                allocation_create(tenant=tenant, by=operator, endpoint=endpoints[endpoint_name], starts_at=start,
                                  note="demo (shared endpoints are split by attribution rules)")
        for endpoint_name, label, value in spec["rules"]:
            endpoint = endpoints[endpoint_name]
            if not AttributionRule.objects.filter(endpoint=endpoint, label=label, value=value).exists():
                attribution_rule_save(rule=AttributionRule(endpoint=endpoint, label=label, value=value,
                                                           tenant=tenant, effective_from=start), by=operator)


def _backfill_gpus(nodes: dict[str, Node], now: dt.datetime, days: int) -> int:
    """One sample a minute per simulated GPU over the last RECENT_DAYS (every 5 minutes before), strictly before
    `now`, whose reading came through the ingest path."""
    written = 0
    end = _floor(now - dt.timedelta(seconds=1), GPU_STEP_S)
    recent = _floor(now - dt.timedelta(days=RECENT_DAYS), GPU_STEP_OLDER_S)
    for spec in demo.NODES:
        gpu_ids = dict(Gpu.objects.filter(node=nodes[spec.hostname]).values_list("uuid", "pk"))
        boards = [SimulatedGpu(s) for s in demo.gpu_specs_of(spec.hostname)]
        t = _floor(now - dt.timedelta(days=min(days, spec.history_days)), GPU_STEP_S)
        while t <= end:
            chunk_end = min(end, t + dt.timedelta(hours=12))
            rows = []
            while t <= chunk_end:
                ts = t.timestamp()
                rows += [sample_row(gpu_id=gpu_ids[b.uuid], reading=b.reading(ts, t), source=SOURCE_SIMULATED)
                         for b in boards]
                t += dt.timedelta(seconds=GPU_STEP_S if t >= recent else GPU_STEP_OLDER_S)
            written += gpu_samples_write(rows=rows)
    return written


def _backfill_usage(now: dt.datetime, start: dt.datetime) -> int:
    """The simulated engines' pages every 5 minutes over the last RECENT_DAYS (every 15 before) from `start`,
    parsed and recorded like live scrapes."""
    endpoints = {e.name: e for e in ServingEndpoint.objects.filter(simulated=True, name__in=[
        e.name for e in demo.ENGINES])}
    clock = _Clock(start.timestamp())
    engines = demo.demo_engines(clock=clock)
    kinds = {e.name: e.kind for e in demo.ENGINES}
    deltas = 0
    t = start.timestamp()
    end = now.timestamp()
    recent = _floor(now - dt.timedelta(days=RECENT_DAYS), USAGE_STEP_OLDER_S).timestamp()
    while t < end:
        batch: list[EndpointOutcome] = []
        day_end = min(end, t + 86400)
        while t < day_end:
            clock.now = t
            scraped_at = dt.datetime.fromtimestamp(t, tz=dt.UTC)
            for engine in engines:
                engine.advance(t)
                scrape = engine_parsers.normalize(engine.render(), engine=kinds[engine.name])
                batch.append(EndpointOutcome(endpoint_id=endpoints[engine.name].pk, scraped_at=scraped_at,
                                             scrape=scrape))
            t += USAGE_STEP_S if t >= recent else USAGE_STEP_OLDER_S
        deltas += scrape_outcomes_record(outcomes=batch).deltas
    return deltas


@dataclass
class _Clock:
    now: float

    def __call__(self) -> float:
        return self.now


def _date_gpus_from_history() -> None:
    """The simulated GPUs were in service since their first back-filled reading: register them from then, so
    GPU-hours (capex, opex, utilization) cover the history and not just the minutes since the seed ran."""
    first = (GpuSample.objects.filter(gpu__simulated=True).values("gpu_id").annotate(first=Min("ts"))
             .values_list("gpu_id", "first"))
    for gpu_id, first_ts in first:
        Gpu.objects.filter(pk=gpu_id, created_at__gt=first_ts).update(created_at=first_ts)


def _roll_up(*, gpu_start: dt.datetime, now: dt.datetime, result: SeedResult) -> None:
    """Run the rollup services over the back-filled range in day-sized steps (the periodic job's 6-hour steps
    would re-read the table four times as often), advance the job's watermark like it does, then run the
    periodic job itself once for the last minutes."""
    settled = rollups.floor_to(now - rollups.SETTLE, rollups.MINUTE)
    mark = RollupWatermark.objects.filter(name=rollups.WATERMARK).first()
    until = max(settled, mark.done_until) if mark is not None else settled
    t = rollups.floor_to(gpu_start, rollups.HOUR)
    while t < until:
        chunk_end = min(until, t + dt.timedelta(days=1))
        with transaction.atomic():
            rollups.gpu_rollup_1m_compute(start=t, end=chunk_end)
            rollups.site_rollup_1m_compute(start=t, end=chunk_end)
            rollups.gpu_rollup_1h_compute(start=t, end=chunk_end)
        t = chunk_end
    if mark is None:
        RollupWatermark.objects.get_or_create(name=rollups.WATERMARK, defaults={"done_until": until})
    rollups.gpu_rollups_run(now=now)
    # Every delta not yet rolled up lands in its own hour and day, however old; then attribution to tenants
    # (what the worker's periodic refresh does), so revenue and invoices are there from the first page.
    usage_rollup()
    tenant_usage_refresh(since=gpu_start, now=now)


def demo_seed(*, password: str | None = None, now: dt.datetime | None = None, days: int = HISTORY_DAYS,
              log: Callable[[str], None] = lambda _msg: None) -> SeedResult:
    """Create (or complete) the demo. Idempotent: run twice, the second run writes nothing.

    `password` is given to users created now (generated when None); existing users keep theirs."""
    result = SeedResult()
    now = (now or timezone.now()).astimezone(dt.UTC).replace(microsecond=0)
    password = password or secrets.token_urlsafe(12)
    history_start = _floor(now - dt.timedelta(days=days), 3600)
    clock = time.monotonic()

    operator = _user("demo-operator", password, result)
    viewer = _user("demo-viewer", password, result)
    partner = Partner.objects.filter(name=PARTNER_NAME).first() or partner_create(name=PARTNER_NAME)
    Membership.objects.get_or_create(user=operator, partner=partner, defaults={"role": PartnerRole.OWNER})
    Membership.objects.get_or_create(user=viewer, partner=partner, defaults={"role": PartnerRole.VIEWER})
    today = now.date()
    sites = {key: _site(partner, key, today) for key in SITES}
    nodes, fresh = _inventory(partner, sites, now)
    _tenants(partner, operator, history_start, result, password)
    result.timings_s["inventory"] = round(time.monotonic() - clock, 2)

    if fresh:
        result.backfilled = True
        log(f"Back-filling {days} days of simulated GPU readings (per GPU: 1 a minute for the last {RECENT_DAYS} days, "
            f"1 every {GPU_STEP_OLDER_S // 60} minutes before)...")
        clock = time.monotonic()
        result.gpu_samples = _backfill_gpus(nodes, now, days)
        result.timings_s["gpu_samples"] = round(time.monotonic() - clock, 2)
    if not EngineSeries.objects.filter(endpoint__site__partner=partner).exists():
        result.backfilled = True
        log("Back-filling simulated engine usage (a scrape of each endpoint every 5 minutes, 15 before the last "
            "week)...")
        clock = time.monotonic()
        result.usage_deltas = _backfill_usage(now, history_start)
        result.timings_s["usage"] = round(time.monotonic() - clock, 2)
    if result.backfilled:
        log("Rolling up (the same rollup services the worker runs)...")
        clock = time.monotonic()
        gpu_start = min(_floor(now - dt.timedelta(days=min(days, n.history_days)), GPU_STEP_S) for n in demo.NODES)
        _date_gpus_from_history()
        _roll_up(gpu_start=gpu_start, now=now, result=result)
        result.timings_s["rollups"] = round(time.monotonic() - clock, 2)
    return result


# ------------------------------------------------------------------ the local machine's real GPUs

def local_hostname() -> str:
    """The short hostname, as `hostname -s` gives it to the worker's `node.<hostname>` queue."""
    return socket.gethostname().split(".")[0]


def local_node_register(*, reader: NvmlReader | None = None) -> Node | None:
    """If NVML loads and sees GPUs here, register this machine as a node (site "This machine") with its real
    readings. Returns None when there is no GPU or the node already exists."""
    hostname = local_hostname()
    if Node.objects.filter(hostname=hostname).exists():
        return None
    reader = reader or NvmlReader(hostname=hostname)
    try:
        reading = reader.read()
    finally:
        reader.shutdown()
    if reading.error or not reading.gpus:
        return None
    partner = Partner.objects.filter(name=PARTNER_NAME).first() or Partner.objects.filter(name="Local machine").first()
    partner = partner or partner_create(name="Local machine")
    site = Site.objects.filter(partner=partner, name="This machine").first() or site_save(site=Site(
        partner=partner, name="This machine", country="ZZ", city=hostname, time_zone="UTC", status=SiteStatus.LIVE,
        contract_date=timezone.now().date(), power_capacity_kw=Decimal("10"), pue=Decimal("1.30"),
        electricity_price_per_kwh=Decimal("0.10000"), capex_per_gpu=Decimal("0"), currency="USD"))
    node = Node.objects.create(site=site, hostname=hostname)
    gpu_report_ingest(node_id=node.pk, report=replace(reading, hostname=hostname))
    return node
