"""Dashboard benchmark: the site page's chart JSON over a 1,000-GPU site with 30 days of history.

    scripts/with_postgres.sh .venv/bin/python bench/dashboard.py [--gpus 1000] [--days 30] [--runs 9]

Seeded with COPY (not timed): one site with `--gpus` GPUs on 8-GPU nodes; `--days` of per-site 1-minute rollups
and per-GPU 1-hour rollups; 8 serving endpoints × 2 models of hourly usage rollups; the last minutes of raw GPU
readings and usage deltas (for the live cards). Timed: each JSON endpoint of the site page through Django's test
client (the whole request: middleware, session, scoping queries, selectors, figure building, JSON encoding), as
a partner viewer, for the 24 h / 7 d / 30 d ranges, `--runs` times each; the heatmap is measured warm (settled
days served from the per-day cache, as on every refresh after the first) and cold (cache cleared before each run).
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

PANELS = ["heatmap", "power", "tokens", "latency", "gpu_states", "buildout"]
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


def seed(*, gpus: int, days: int, now: dt.datetime) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from sites.buildout import milestone_plan_create
    from sites.models import Gpu, Membership, Node, Partner, ServingEndpoint, Site
    from telemetry.models import GpuRollup1h, GpuSample, SiteGpuRollup1m
    from telemetry.models.metering import EngineSeries, UsageDelta, UsageRollup
    from telemetry.retention import gpu_sample_partitions_ensure

    partner, _ = Partner.objects.get_or_create(name="Bench", slug="bench")
    user, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    Membership.objects.get_or_create(user=user, partner=partner, defaults={"role": "viewer"})
    site, created = Site.objects.get_or_create(
        partner=partner, name="Bench site", slug="bench-site",
        defaults=dict(country="NO", city="Oslo", time_zone="Europe/Oslo", contract_date=dt.date(2026, 1, 1),
                      power_capacity_kw=1500, electricity_price_per_kwh="0.08", capex_per_gpu="30000"))
    milestone_plan_create(site=site)
    if not created:
        for table in ("telemetry_gpurollup1h", "telemetry_sitegpurollup1m", "telemetry_usagerollup",
                      "telemetry_usagedelta", "telemetry_gpusample"):
            with connection.cursor() as cursor:
                cursor.execute(f"TRUNCATE {table}")
    nodes = [Node.objects.get_or_create(site=site, hostname=f"bench-n-{i:03d}",
                                        defaults={"status": "online", "last_seen_at": now})[0]
             for i in range(-(-gpus // 8))]
    Gpu.objects.filter(node__site=site).delete() if not created and Gpu.objects.filter(
        node__site=site).count() != gpus else None
    if not Gpu.objects.filter(node__site=site).exists():
        Gpu.objects.bulk_create([Gpu(node=nodes[i // 8], uuid=f"GPU-dash-{i:06d}", index=i % 8, last_seen_at=now,
                                     name="NVIDIA H100 80GB HBM3") for i in range(gpus)])
    gpu_ids = list(Gpu.objects.filter(node__site=site).order_by("pk").values_list("pk", flat=True))
    endpoints = [ServingEndpoint.objects.get_or_create(
        site=site, name=f"vllm-{i}", defaults={"metrics_url": f"http://127.0.0.1:{9100 + i}/metrics",
                                               "health": "healthy", "last_scraped_at": now})[0] for i in range(8)]

    start = (now - dt.timedelta(days=days)).replace(second=0, microsecond=0)
    began = time.perf_counter()
    minutes = days * 24 * 60
    site_rows = _copy(SiteGpuRollup1m._meta.db_table, [
        "site_id", "bucket", "gpu_count", "sample_count", "util_samples", "util_mean_pct", "util_max_pct",
        "power_mean_w", "power_max_w", "energy_j", "energy_estimated", "computed_at"],
        ((site.pk, start + dt.timedelta(minutes=m), gpus, 6 * gpus, 6 * gpus, 40 + (m % 600) / 20, 100,
          gpus * (300 + m % 300), gpus * 700.0, gpus * 18_000 + m % 1000, False, now) for m in range(minutes)))
    hour0 = start.replace(minute=0)
    hours = days * 24
    gpu_rows = _copy(GpuRollup1h._meta.db_table, [
        "gpu_id", "bucket", "sample_count", "util_samples", "util_mean_pct", "util_max_pct", "power_samples",
        "power_mean_w", "power_max_w", "energy_j", "energy_estimated", "memory_used_max_bytes", "temperature_max_c",
        "computed_at"],
        ((g, hour0 + dt.timedelta(hours=h), 360, 360, float((h * 7 + n) % 101), 100, 360, 300.0 + (h + n) % 300,
          700.0, 1_080_000 + n, False, 40 * 2**30, 60, now)
         for h in range(hours) for n, g in enumerate(gpu_ids)))
    series = []
    for ep in endpoints:
        for model in ("llama-3.1-70b", "qwen2.5-32b"):
            series.append(EngineSeries.objects.get_or_create(
                endpoint=ep, key=f"{model}", defaults={"model": model, "labels": {}, "first_seen_at": start,
                                                       "last_seen_at": now})[0])
    usage_rows = _copy(UsageRollup._meta.db_table, [
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
    gpu_sample_partitions_ensure(days={now.date(), (now - dt.timedelta(seconds=40)).date()})
    _copy(GpuSample._meta.db_table, ["gpu_id", "ts", "source", "util_pct", "power_w", "temperature_c"],
          ((g, now - dt.timedelta(seconds=10 * k + 1), "nvml", 50 + k, 400.0, 60) for g in gpu_ids for k in range(3)))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {"site": site, "user": user, "seconds": time.perf_counter() - began,
            "rows": {"site 1-minute rollups": site_rows, "GPU 1-hour rollups": gpu_rows, "usage rollups": usage_rows}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    _ensure_database()
    import django

    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    setup_test_environment()  # the test client's host is allowed
    now = timezone.now()
    data = seed(gpus=args.gpus, days=args.days, now=now)
    site = data["site"]
    client = Client()
    client.force_login(data["user"])

    def timed(url: str) -> tuple[float, int]:
        began = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - began) * 1000
        if response.status_code != 200:
            raise SystemExit(f"GET {url}: {response.status_code} {response.content[:300]!r}")
        return elapsed, len(response.content)

    results: dict[tuple[str, str], list[float]] = {}
    sizes: dict[tuple[str, str], int] = {}
    for rng in RANGES:
        q = f"?range={rng}"
        urls = {name: reverse("sites:site_chart", args=[site.slug, name]) + q for name in PANELS}
        urls["live JSON"] = reverse("sites:site_data", args=[site.slug])
        urls["page HTML"] = reverse("sites:site_detail", args=[site.slug]) + q
        cache.clear()
        timed(urls["heatmap"])  # warm the per-day heatmap cache once, as the first visitor does
        for _ in range(args.runs):
            total = 0.0
            for name, url in urls.items():
                ms, size = timed(url)
                results.setdefault((rng, name), []).append(ms)
                sizes[(rng, name)] = size
                total += ms
            results.setdefault((rng, "whole page"), []).append(total)
            cache.clear()
            ms, _ = timed(urls["heatmap"])
            results.setdefault((rng, "heatmap (cold cache)"), []).append(ms)
            results.setdefault((rng, "whole page (cold heatmap)"), []).append(total - results[(rng, "heatmap")][-1]
                                                                               + ms)

    rows = data["rows"]
    print("## Dashboard chart JSON (`bench/dashboard.py`)\n")
    print(f"One site with {args.gpus:,} GPUs and {args.days} days of history, seeded with COPY in "
          f"{data['seconds']:.1f} s: " + ", ".join(f"{v:,} {k}" for k, v in rows.items()) + ". Each request goes "
          "through Django's test client as a partner viewer (middleware, session, `visible_to` scoping, selectors, "
          f"figure, JSON). Median and p95 of {args.runs} runs per range, in ms; target p95 ≤ {TARGET_PANEL_MS} ms a "
          f"panel and ≤ {TARGET_PAGE_MS} ms the whole page (HTML + live JSON + every chart, sequential).\n")
    print("| Panel | " + " | ".join(f"{r} median | {r} p95" for r in RANGES) + " | JSON size (30 d) |")
    print("|---|" + "---:|" * (2 * len(RANGES) + 1))
    names = [*PANELS, "heatmap (cold cache)", "live JSON", "page HTML", "whole page", "whole page (cold heatmap)"]
    misses = []
    for name in names:
        cells = []
        for rng in RANGES:
            values = results[(rng, name)]
            med, top = statistics.median(values), p95(values)
            target = TARGET_PAGE_MS if name.startswith("whole page") else TARGET_PANEL_MS
            mark = "" if top <= target else " ✗"
            if mark:
                misses.append(f"{name} {rng} ({top:.0f} ms)")
            cells += [f"{med:.1f}", f"{top:.1f}{mark}"]
        size = sizes.get(("30d", name))
        print(f"| {name} | " + " | ".join(cells) + f" | {f'{size / 1024:,.0f} KiB' if size else ''} |")
    print()
    verdict = "Over target: " + "; ".join(misses) + "." if misses else "Every p95 is within target."
    print("✗ = over target. " + verdict)
    print("\nHow the ranges are served: the power chart reads per-site 1-minute rollups (24 h: 1,440 minutes; "
          "7 d and 30 d aggregated to hours in SQL); the heatmap reads per-GPU hourly rollups binned in SQL "
          "(`date_bin`) to ≤ 36,000 cells (1,000 GPUs: 1 h columns for 24 h, 6 h for 7 d, 24 h for 30 d), and "
          "settled whole days come from a per-day cache (10 min), so a live refresh reads only today's rows; tokens "
          "and latency read hourly usage rollups.")


if __name__ == "__main__":
    main()
