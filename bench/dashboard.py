"""Dashboard benchmark: the site pages and the partner overview over 10,000 GPUs with 30 days of rollups.

    scripts/with_postgres.sh .venv/bin/python bench/dashboard.py [--gpus-a 1000] [--gpus-b 9000] [--days 30]
        [--runs 20] [--cold-runs 5] [--reuse] [--only A,B,overview]

Seeded (not timed): one partner with two sites, A with `--gpus-a` GPUs (the issue-7 case) and B with `--gpus-b`
(issue 9's large site), 8-GPU nodes; `--days` of per-site 1-minute rollups and per-GPU 1-hour rollups generated
server-side (INSERT ... SELECT generate_series), the heatmap's utilization blocks computed from them by the rollup
service, 8 serving endpoints × 2 models of hourly usage rollups per site (COPY); 2 hours of raw GPU readings every
10 s (the day partition the live cards search, as mid-morning in production) and the last minutes of usage deltas.
Timed: every JSON endpoint and the HTML of site A's page, site B's page and the overview `/`, through Django's test
client (the whole request: middleware, session, scoping, selectors, figure building, JSON encoding) with DEBUG off,
without the test runner's template instrumentation and with the web process's garbage-collector settings
(`factory_portal.runtime.web_process_gc_tune`, as wsgi.py), as production serves, as a partner viewer, for the
24 h / 7 d / 30 d ranges, `--runs` times each after one warm-up; then the heatmap cold (`--cold-runs` times, the
cache emptied before each).
"Whole page" = the page's HTML + its live JSON + every chart JSON, one after the other (the browser fetches the
charts concurrently, so this is an upper bound).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "factory_portal.settings")
# As production serves: no SQL logging, no template debug information.
os.environ.setdefault("DEBUG", "0")

PANELS = ["heatmap", "power", "tokens", "latency", "gpu_states", "buildout"]
OVERVIEW_PANELS = ["gpu_states", "utilization", "power", "tokens"]
RANGES = ["24h", "7d", "30d"]
TARGET_PANEL_MS = 100
TARGET_PAGE_MS = 1000


def _ensure_database() -> None:
    import psycopg

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Run under scripts/with_postgres.sh (DATABASE_URL must point to PostgreSQL).")
    name = url.rsplit("/", 1)[1].split("?")[0]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def _copy(table: str, columns: list[str], rows) -> int:
    from django.db import connection

    n = 0
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)
            n += 1
    return n


def _node_hosts(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-n-{i:04d}" for i in range(count)]


def _seed_site(*, partner, slug: str, name: str, gpus: int, now: dt.datetime):
    from sites.buildout import milestone_plan_create
    from sites.models import Gpu, Node, ServingEndpoint, Site

    site, _ = Site.objects.get_or_create(
        partner=partner, slug=slug,
        defaults=dict(name=name, country="NO", city="Oslo", time_zone="Europe/Oslo",
                      contract_date=dt.date(2026, 1, 1), power_capacity_kw=1.5 * gpus,
                      electricity_price_per_kwh="0.08", capex_per_gpu="30000",
                      baseline_driver_version="570.133", baseline_cuda_version="12.8"))
    milestone_plan_create(site=site)
    hosts = _node_hosts(slug, -(-gpus // 8))
    # Every 50th node runs an older driver: the compliance panel has drift to report.
    Node.objects.bulk_create([Node(site=site, hostname=h, status="online", last_seen_at=now,
                                   driver_version="565.57.01" if i % 50 == 7 else "570.133.20",
                                   cuda_driver_version="12.8") for i, h in enumerate(hosts)])
    nodes = list(Node.objects.filter(site=site).order_by("hostname"))
    Gpu.objects.bulk_create([Gpu(node=nodes[i // 8], uuid=f"GPU-{slug}-{i:06d}", index=i % 8, last_seen_at=now,
                                 name="NVIDIA H100 80GB HBM3", driver_version=nodes[i // 8].driver_version,
                                 cuda_driver_version="12.8") for i in range(gpus)])
    endpoints = [ServingEndpoint.objects.create(
        site=site, name=f"vllm-{i}", metrics_url=f"http://127.0.0.1:{9100 + i}/metrics", health="healthy",
        last_scraped_at=now) for i in range(8)]
    return site, endpoints


def seed(*, gpus_a: int, gpus_b: int, days: int, now: dt.datetime) -> dict:
    """One partner, two sites (A: `gpus_a`, B: `gpus_b` GPUs) with `days` of rollups each; the GPU hourly
    rollups are generated server-side (INSERT ... SELECT generate_series), the heatmap's utilization blocks are
    computed from them by the rollup service (timed separately), the rest is COPY."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from sites.models import Membership, Partner
    from telemetry.models import GpuRollup1h, SiteGpuRollup1m
    from telemetry.models.metering import EngineSeries, UsageDelta, UsageRollup
    from telemetry.rollups import gpu_util_rollup_compute

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE sites_partner, telemetry_gpurollup1h, telemetry_sitegpurollup1m, "
                       "telemetry_usagerollup, telemetry_usagedelta, telemetry_gpusample, telemetry_gpuutilrollup "
                       "CASCADE")
    partner = Partner.objects.create(name="Bench", slug="bench")
    user, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    Membership.objects.get_or_create(user=user, partner=partner, defaults={"role": "viewer"})
    began = time.perf_counter()
    site_a, endpoints_a = _seed_site(partner=partner, slug="bench-a", name="Site A", gpus=gpus_a, now=now)
    site_b, endpoints_b = _seed_site(partner=partner, slug="bench-b", name="Site B", gpus=gpus_b, now=now)
    start = (now - dt.timedelta(days=days)).replace(second=0, microsecond=0)
    hour0 = start.replace(minute=0)
    hours = days * 24
    rows: dict[str, int] = {}
    with connection.cursor() as cursor:
        # The seed skips FK triggers (a superuser session): 7.2M rows whose GPUs were just created. The hourly
        # table's secondary (non-unique) indexes are rebuilt after the load, which is faster than row by row;
        # the timed queries run against the same schema.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexdef NOT LIKE "
                       "'CREATE UNIQUE%%'", [GpuRollup1h._meta.db_table])
        secondary = cursor.fetchall()
        for name, _ in secondary:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute(
            f"""INSERT INTO {SiteGpuRollup1m._meta.db_table} (site_id, bucket, gpu_count, sample_count, util_samples,
                    util_mean_pct, util_max_pct, power_mean_w, power_max_w, energy_j, energy_estimated, computed_at)
                SELECT s.id, %s + m * interval '1 minute', s.n, 6 * s.n, 6 * s.n, 40 + (m %% 600) / 20.0, 100,
                       s.n * (300 + m %% 300), s.n * 700.0, s.n * 18000 + m %% 1000, false, %s
                FROM (VALUES (%s, %s), (%s, %s)) AS s(id, n), generate_series(0, %s - 1) AS m""",
            [start, now, site_a.pk, gpus_a, site_b.pk, gpus_b, days * 24 * 60])
        rows["site 1-minute rollups"] = cursor.rowcount
        cursor.execute(
            f"""INSERT INTO {GpuRollup1h._meta.db_table} (gpu_id, bucket, sample_count, util_samples, util_mean_pct,
                    util_max_pct, power_samples, power_mean_w, power_max_w, energy_j, energy_estimated,
                    memory_used_max_bytes, temperature_max_c, computed_at)
                SELECT g.id, %s + h * interval '1 hour', 360, 360, ((h * 7 + g.id) %% 101)::float, 100, 360,
                       300.0 + (h + g.id) %% 300, 700.0, 1080000 + g.id, false, 42949672960, 60, %s
                FROM sites_gpu g JOIN sites_node n ON n.id = g.node_id, generate_series(0, %s - 1) AS h
                WHERE n.site_id IN (%s, %s)""",
            [hour0, now, hours, site_a.pk, site_b.pk])
        rows["GPU 1-hour rollups"] = cursor.rowcount
        for _, definition in secondary:
            cursor.execute(definition)
        cursor.execute("SET session_replication_role = DEFAULT")
    seeded = time.perf_counter() - began
    began = time.perf_counter()
    blocks = gpu_util_rollup_compute(start=hour0, end=now)
    blocks_s = time.perf_counter() - began
    rows["heatmap utilization blocks (per GPU 6 h + 1 d, per node 1 h + 6 h + 1 d) and site vectors of them"] = blocks
    series = []
    for ep in endpoints_a + endpoints_b:
        for model in ("llama-3.1-70b", "qwen2.5-32b"):
            series.append(EngineSeries.objects.create(endpoint=ep, key=model, model=model, labels={},
                                                      first_seen_at=start, last_seen_at=now))
    rows["usage rollups"] = _copy(UsageRollup._meta.db_table, [
        "series_id", "endpoint_id", "model", "bucket", "bucket_start", "prompt_tokens", "generation_tokens",
        "requests_ok", "requests_failed", "ttft_sum_s", "ttft_count", "itl_sum_s", "itl_count"],
        ((s.pk, s.endpoint_id, s.model, "hour", hour0 + dt.timedelta(hours=h), 3_600_000 + h, 7_200_000, 3600, 4,
          900.0, 3600, 5000.0, 250_000) for h in range(hours) for s in series))
    _copy(UsageDelta._meta.db_table, [
        "series_id", "endpoint_id", "interval_start", "interval_end", "prompt_tokens", "generation_tokens",
        "requests_ok", "requests_failed", "requests_by_reason", "ttft_sum_s", "ttft_count", "itl_sum_s", "itl_count",
        "reset", "rolled_up"],
        ((s.pk, s.endpoint_id, now - dt.timedelta(seconds=15 * (k + 1)), now - dt.timedelta(seconds=15 * k), 15_000,
          30_000, 15, 0, "{}", 3.75, 15, 20.0, 1000, False, True) for s in series for k in range(20)))
    rows["raw GPU readings (the last 2 h, behind the live window)"] = raw_history(now=now)
    freshen(now=now)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        # The heatmap's block tables as autovacuum leaves them (visibility map set): index-only scans.
        cursor.execute("VACUUM telemetry_gpuutilrollup, telemetry_nodeutilrollup")
    return {"sites": {"A": site_a, "B": site_b}, "user": user, "seconds": seeded, "blocks_seconds": blocks_s,
            "rows": rows}


# Hours of raw readings (every 10 s, every GPU) seeded behind the live window: the day partition the live cards read
# holds this much history, as it does mid-morning in production (up to 24 h by the end of the day).
RAW_HISTORY_H = 2


def raw_history(*, now: dt.datetime, hours: int = RAW_HISTORY_H) -> int:
    """`hours` of raw readings of every GPU, every 10 s, ending 40 s before `now` (server-side INSERT … SELECT)."""
    from django.db import connection

    from telemetry.models import GpuSample
    from telemetry.retention import gpu_sample_partitions_ensure

    start = now - dt.timedelta(hours=hours, seconds=40)
    gpu_sample_partitions_ensure(days={start.date(), now.date()})
    with connection.cursor() as cursor:
        # TRUNCATE, not DELETE: no dead rows for later appends to fill (production appends in time order).
        cursor.execute(f"TRUNCATE {GpuSample._meta.db_table}")
        cursor.execute(
            f"""INSERT INTO {GpuSample._meta.db_table} (gpu_id, ts, source, util_pct, power_w, temperature_c)
                SELECT g.id, %s + k * interval '10 seconds', 'nvml', 40 + k %% 20, 400.0, 60
                FROM sites_gpu g, generate_series(0, %s - 1) AS k""", [start, hours * 360])
        inserted = cursor.rowcount
        cursor.execute(f"ANALYZE {GpuSample._meta.db_table}")
    return inserted


READING_EVERY = dt.timedelta(seconds=10)


def freshen(*, now: dt.datetime) -> None:
    """Make the fleet look healthy at `now`, as the node workers would have: every GPU's readings every 10 s up to
    `now` appended after the newest one stored (none when it is less than 10 s old), each GPU row updated with its
    newest reading (`last_seen_at` and, where the columns exist, the latest figures the ingest keeps), nodes and
    endpoints seen now. The timed pages then show what an operator normally sees (a node table of healthy nodes, live
    cards) rather than a fleet gone stale while the seed ran (every stale node is listed, by design).

    Append-only, one UPDATE of the GPU rows per 10 s: the raw-sample partition and the GPU table see the writes they
    see in production. (Replacing the window's readings on every call, as earlier rounds did, left dead rows in the
    newest pages and widened the BRIN ranges the raw-sample live query read: 700+ ms figures that production never
    sees.)"""
    from django.db import connection

    from sites.models import Gpu
    from telemetry.models import GpuSample
    from telemetry.retention import gpu_sample_partitions_ensure

    table = GpuSample._meta.db_table
    gpu_sample_partitions_ensure(days={now.date(), (now - dt.timedelta(minutes=10)).date()})
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MAX(ts) FROM {table} WHERE ts > %s AND ts <= %s", [now - dt.timedelta(hours=1), now])
        last = cursor.fetchone()[0]
        first = last + READING_EVERY if last else now - 2 * READING_EVERY - dt.timedelta(seconds=1)
        steps = int((now - first) / READING_EVERY) + 1 if first <= now else 0
        if steps:
            newest = first + (steps - 1) * READING_EVERY
            cursor.execute(
                f"""INSERT INTO {table} (gpu_id, ts, source, util_pct, power_w, temperature_c)
                    SELECT g.id, %s + k * interval '10 seconds', 'nvml', 50 + k %% 20, 400.0, 60
                    FROM sites_gpu g, generate_series(0, %s - 1) AS k""", [first, steps])
            if any(f.name == "last_util_pct" for f in Gpu._meta.fields):
                # What the ingest keeps on the GPU row with the newest reading; the check lets this script time code
                # from before those columns existed on the same database.
                cursor.execute("UPDATE sites_gpu SET last_seen_at = %s, last_util_pct = %s, last_power_w = 400.0",
                               [newest, 50 + (steps - 1) % 20])
            else:
                cursor.execute("UPDATE sites_gpu SET last_seen_at = %s", [newest])
        cursor.execute("UPDATE sites_node SET last_seen_at = %s", [now])
        cursor.execute("UPDATE sites_servingendpoint SET last_scraped_at = %s", [now])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus-a", type=int, default=1000)
    parser.add_argument("--gpus-b", type=int, default=9000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cold-runs", type=int, default=5, help="cold-cache heatmap runs per range (the slowest)")
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database of an earlier run")
    parser.add_argument("--only", default="A,B,overview", help="which pages to time (A, B, overview)")
    args = parser.parse_args()

    _ensure_database()
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from sites.models import Site

    call_command("migrate", verbosity=0)
    now = timezone.now()
    if args.reuse and Site.objects.filter(slug="bench-b").exists():
        from django.contrib.auth import get_user_model

        from telemetry.models import GpuSample

        data = {"sites": {"A": Site.objects.get(slug="bench-a"), "B": Site.objects.get(slug="bench-b")},
                "user": get_user_model().objects.get(username="bench-viewer"), "seconds": 0.0, "blocks_seconds": 0.0,
                "rows": {}}
        # The raw history behind the live window must be recent (the live query's cost depends on it).
        history = GpuSample.objects.filter(ts__gte=now - dt.timedelta(hours=RAW_HISTORY_H)).count()
        if history < 0.9 * RAW_HISTORY_H * 360 * (args.gpus_a + args.gpus_b):
            data["rows"]["raw GPU readings (the last 2 h, behind the live window)"] = raw_history(now=now)
    else:
        data = seed(gpus_a=args.gpus_a, gpus_b=args.gpus_b, days=args.days, now=now)
    # Not under setup_test_environment(): its template instrumentation copies every template's context for the
    # test client, a cost no server pays. Host 127.0.0.1 is in the default ALLOWED_HOSTS.
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(data["user"])
    # What factory_portal/wsgi.py does once the web process has loaded the application.
    from factory_portal.runtime import web_process_gc_tune

    web_process_gc_tune()

    def timed(url: str) -> tuple[float, int]:
        began = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - began) * 1000
        if response.status_code != 200:
            raise SystemExit(f"GET {url}: {response.status_code} {response.content[:300]!r}")
        return elapsed, len(response.content)

    def page_urls(target: str, rng: str) -> dict[str, str]:
        q = f"?range={rng}"
        if target == "overview":
            urls = {name: reverse("sites:overview_chart", args=[name]) + q for name in OVERVIEW_PANELS}
            urls["live JSON"] = reverse("sites:overview_data")
            urls["page HTML"] = reverse("home") + q
            return urls
        slug = data["sites"][target].slug
        urls = {name: reverse("sites:site_chart", args=[slug, name]) + q for name in PANELS}
        urls["live JSON"] = reverse("sites:site_data", args=[slug])
        urls["page HTML"] = reverse("sites:site_detail", args=[slug]) + q
        return urls

    results: dict[tuple[str, str, str], list[float]] = {}
    sizes: dict[tuple[str, str, str], int] = {}
    targets = [t for t in ("A", "B", "overview") if t in args.only.split(",")]
    for target in targets:
        for rng in RANGES:
            urls = page_urls(target, rng)
            cache.clear()
            freshen(now=timezone.now())
            for url in urls.values():  # warm up once, as the first visitor does (the per-day heatmap cache)
                timed(url)
            fresh_at = time.monotonic()
            for _ in range(args.runs):
                # New readings every poll interval, as the fleet sends them: a range's runs take longer than the
                # 30-s live window, and a fleet gone stale mid-run lists all 1,125 nodes as problems (113 KiB of live
                # JSON instead of 7 KiB).
                if time.monotonic() - fresh_at >= READING_EVERY.total_seconds():
                    freshen(now=timezone.now())
                    fresh_at = time.monotonic()
                total = 0.0
                for name, url in urls.items():
                    ms, size = timed(url)
                    results.setdefault((target, rng, name), []).append(ms)
                    sizes[(target, rng, name)] = size
                    total += ms
                results.setdefault((target, rng, "whole page"), []).append(total)
            # The cold heatmap after the warm runs: emptying the cache also empties what the other panels keep (the
            # power chart's settled days, the cards' economics of the minute), which would make the next warm run's
            # panels cold too.
            for run in range(min(args.cold_runs, args.runs) if "heatmap" in urls else 0):
                cache.clear()
                ms, _ = timed(urls["heatmap"])
                results.setdefault((target, rng, "heatmap (cold cache)"), []).append(ms)
                results.setdefault((target, rng, "whole page (cold heatmap)"), []).append(
                    results[(target, rng, "whole page")][run] - results[(target, rng, "heatmap")][run] + ms)

    # The pre-warm's own cost (the rollup worker pays it, not a user): every site × 24 h / 7 d / 30 d × (now, now +
    # 60 s), from an empty cache and again with everything cached.
    from telemetry import gpu_selectors

    warm_ms: list[float] = []
    if hasattr(gpu_selectors, "site_heatmaps_warm"):
        cache.clear()
        for _ in range(2):
            began = time.perf_counter()
            gpu_selectors.site_heatmaps_warm(now=timezone.now())
            warm_ms.append((time.perf_counter() - began) * 1000)

    rows = data["rows"]
    a, b = data["sites"]["A"], data["sites"]["B"]
    print("## Dashboard chart JSON (`bench/dashboard.py`)\n")
    print(f"One partner with {args.gpus_a + args.gpus_b:,} GPUs and {args.days} days of history: site A "
          f"({args.gpus_a:,} GPUs, the issue-7 case) and site B ({args.gpus_b:,} GPUs, a large site), 8-GPU nodes, "
          f"8 serving endpoints × 2 models each. Seeded in {data['seconds']:.1f} s (server-side INSERT … SELECT "
          "generate_series): " + ", ".join(f"{v:,} {k}" for k, v in rows.items()) + f"; the blocks and vectors were "
          f"computed from the hourly rollups by the rollup service in {data['blocks_seconds']:.1f} s. Each request "
          "goes through Django's test client as a partner viewer (middleware, session, `visible_to` scoping, "
          f"selectors, figure, JSON) with DEBUG off, without the test runner's template instrumentation and with "
          "the web process's garbage-collector settings (`factory_portal/runtime.py`), as production serves. "
          f"Median and p95 of {args.runs} runs per range ({args.cold_runs} for the cold "
          "heatmap), in ms, after one warm-up "
          f"request; target p95 ≤ {TARGET_PANEL_MS} ms a panel and ≤ {TARGET_PAGE_MS} ms the whole page (HTML + "
          "live JSON + every chart, one after the other: the browser fetches the charts concurrently). The "
          "cold-cache heatmap is timed after a range's warm runs, the cache emptied before each (the first visitor "
          "after a restart, before the pre-warm's next run).\n")
    misses = []
    titles = {"A": f"Site A ({a.slug}, {args.gpus_a:,} GPUs)", "B": f"Site B ({b.slug}, {args.gpus_b:,} GPUs)",
              "overview": f"Partner overview `/` (fleet charts over all {args.gpus_a + args.gpus_b:,} GPUs)"}
    for target in targets:
        panels = OVERVIEW_PANELS if target == "overview" else PANELS
        names = [*panels, *([] if target == "overview" else ["heatmap (cold cache)"]), "live JSON", "page HTML",
                 "whole page", *([] if target == "overview" else ["whole page (cold heatmap)"])]
        print(f"**{titles[target]}**\n")
        print("| Panel | " + " | ".join(f"{r} median | {r} p95" for r in RANGES) + " | JSON size (30 d) |")
        print("|---|" + "---:|" * (2 * len(RANGES) + 1))
        for name in names:
            cells = []
            for rng in RANGES:
                values = results[(target, rng, name)]
                med, top = statistics.median(values), p95(values)
                limit = TARGET_PAGE_MS if name.startswith("whole page") else TARGET_PANEL_MS
                mark = "" if top <= limit else " ✗"
                if mark:
                    misses.append(f"{target} {name} {rng} ({top:.0f} ms)")
                cells += [f"{med:.1f}", f"{top:.1f}{mark}"]
            size = sizes.get((target, "30d", name))
            print(f"| {name} | " + " | ".join(cells) + f" | {f'{size / 1024:,.0f} KiB' if size else ''} |")
        print()
    verdict = "Over target: " + "; ".join(misses) + "." if misses else "Every p95 is within target."
    print("✗ = over target. " + verdict)
    if warm_ms:
        print(f"\nHeatmap pre-warm (`site_heatmaps_warm`, both sites × 24 h / 7 d / 30 d × now and now + 60 s, in the "
              f"rollup worker): {warm_ms[0]:,.0f} ms from an empty cache, {warm_ms[1]:,.0f} ms with everything cached.")
    print(f"\nLoad average while measuring (1/5/15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}.")
    print("\nHow the panels are served (docs/dashboards.md, \"Performance\"): inventory panels (`gpu_states`, "
          "cards, node table) count GPUs by state and versions in one SQL scan (`COUNT … FILTER` grouped by node and "
          "versions); the power chart reads "
          "per-site 1-minute rollups (hours aggregated in SQL beyond 30 h, settled days cached per site); the live "
          "cards read each GPU's latest reading, kept on its row by the ingest (one row per GPU of the site, seen "
          "in the last 3 poll intervals); "
          "tokens and latency read hourly usage rollups binned in SQL to ≤ 240 points a series; the heatmap reads "
          "the sites' utilization vectors (one row per site and 1-hour, 6-hour or 1-day block holding every GPU's, or "
          "on a big site every node's, figures) for the settled part, a row per GPU up to 1,200 GPUs and a row per "
          "node beyond, with the settled part cached as one matrix (pre-warmed by a rollup-queue task when the cache "
          "is shared) so a refresh reads only the last hour's blocks.")


if __name__ == "__main__":
    main()
