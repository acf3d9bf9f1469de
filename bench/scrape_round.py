"""Scrape-round benchmark: 2,000 loopback engine endpoints through the project's batch path, and Prometheus 2.42
scraping the same targets, side by side.

    scripts/with_postgres.sh .venv/bin/python bench/scrape_round.py [--endpoints 2000] [--rounds 4] [--fleets 4]

Setup: the simulated engine fleet (`telemetry/simulator/engines.py`, real engine-format pages, counters growing)
served by `--fleets` processes on loopback ports, `--endpoints` ServingEndpoints in PostgreSQL. A round is what
the Celery batch path does on two worker processes: batches of 250 endpoint ids, each `endpoints_scrape` (async
httpx fetch, targeted parse, normalize, one transaction writing health, series, snapshots and deltas), two
batches at a time. The first round (series creation, baselines) is not counted. CPU is the two scraping processes
plus every PostgreSQL process (Prometheus' CPU includes its own storage, so ours includes the database's).

Prometheus 2.42 (`apt-get install prometheus`, run directly with a generated config, storage in a tmp dir,
listening on 127.0.0.1 only) then scrapes the same endpoints; samples/s per core is the increase of its
`prometheus_tsdb_head_samples_appended_total` ÷ the increase of its `process_cpu_seconds_total`. Ours counts the
samples on the pages it scraped (what Prometheus appends) per CPU second; the values it actually stores are fewer
(the adapter takes ~10–20 samples of each page). Prints one markdown section (bench/run_all.py).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "factory_portal.settings")
os.environ["SCRAPE_ALLOW_LOOPBACK"] = "1"
os.environ.setdefault("LOG_LEVEL", "WARNING")

from bench.fleet import Fleet  # noqa: E402
from telemetry.simulator.engines import SIMULATED_KINDS  # noqa: E402

BATCH = 250
WORKERS = 2


def _stat(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


_postmaster: list[int] = []


def postmaster_pid() -> int:
    """Our cluster's postmaster: the parent of this benchmark's backend (other clusters on the machine — other
    developers' test runs — must not count)."""
    if not _postmaster:
        import psycopg

        with psycopg.connect(os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres") as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        fields = _stat(backend)
        if fields is None:
            raise RuntimeError("PostgreSQL does not run on this machine: its CPU cannot be measured")
        _postmaster.append(int(fields[1]))
    return _postmaster[0]


def postgres_cpu_s() -> float:
    """CPU seconds (user + system) of our PostgreSQL cluster, from /proc: the postmaster, its live children, and
    its reaped children (cutime + cstime), so a backend that exits during a round still counts."""
    tick = os.sysconf("SC_CLK_TCK")
    root = postmaster_pid()
    fields = _stat(root)
    if fields is None:
        return 0.0
    total = sum(int(f) for f in fields[11:15]) / tick  # utime, stime, cutime, cstime
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            child = _stat(int(pid))
            if child is not None and child[1] == str(root):
                total += (int(child[11]) + int(child[12])) / tick
    return total


def _worker_init() -> None:
    import django

    django.setup()


def scrape_batch(ids: list[int]) -> tuple[float, int, int]:
    from telemetry.metering_services import endpoints_scrape

    started = time.process_time()
    summary = endpoints_scrape(endpoint_ids=ids)
    return time.process_time() - started, summary.healthy, summary.deltas


def ensure_database() -> None:
    """`make bench` starts an empty PostgreSQL cluster: create DATABASE_URL's database when it is missing."""
    from urllib.parse import urlsplit

    import psycopg

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_database(urls: list[str]) -> list[int]:
    import datetime as dt
    from decimal import Decimal

    from django.core.management import call_command

    from sites.models import Partner, ServingEndpoint, Site

    call_command("migrate", verbosity=0)
    ServingEndpoint.objects.filter(name__startswith="bench-").delete()
    partner, _ = Partner.objects.get_or_create(slug="bench", defaults={"name": "Bench partner"})
    site, _ = Site.objects.get_or_create(slug="bench-site", defaults=dict(
        partner=partner, name="Bench site", country="NO", city="Oslo", contract_date=dt.date(2026, 1, 5),
        power_capacity_kw=Decimal("20000"), pue=Decimal("1.2"), electricity_price_per_kwh=Decimal("0.08"),
        currency="USD", capex_per_gpu=Decimal("30000"), amortization_months=48, opex_per_gpu_hour=Decimal("0.1")))
    rows = ServingEndpoint.objects.bulk_create(
        [ServingEndpoint(site=site, name=f"bench-{i}", metrics_url=url, engine="auto") for i, url in enumerate(urls)])
    return [r.pk for r in rows]


def page_samples(urls: list[str]) -> int:
    """Samples on one page of every endpoint (the page size is fixed per engine kind; values change)."""
    from telemetry.parsing import parse

    per_kind: dict[str, int] = {}
    total = 0
    for i, url in enumerate(urls):
        kind = SIMULATED_KINDS[i % len(SIMULATED_KINDS)]
        if kind not in per_kind:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL we built
                per_kind[kind] = len(parse(response.read().decode()))
        total += per_kind[kind]
    return total


def processes_cpu_s(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    return sum((int(f[11]) + int(f[12])) / tick for f in (_stat(pid) for pid in pids) if f is not None)


def our_rounds(ids: list[int], rounds: int, fleet_pids: list[int]) -> list[dict]:
    from django.db import connections

    connections.close_all()  # the pool forks: no shared connection
    batches = [ids[i:i + BATCH] for i in range(0, len(ids), BATCH)]
    results = []
    with ProcessPoolExecutor(WORKERS, mp_context=mp.get_context("fork"), initializer=_worker_init) as pool:
        for round_no in range(rounds + 1):
            pg0, fleet0, started = postgres_cpu_s(), processes_cpu_s(fleet_pids), time.perf_counter()
            done = list(pool.map(scrape_batch, batches))
            wall = time.perf_counter() - started
            pg = postgres_cpu_s() - pg0
            cpu = sum(d[0] for d in done) + pg
            healthy, deltas = sum(d[1] for d in done), sum(d[2] for d in done)
            print(f"round {round_no}: {wall:.2f} s wall, {cpu:.2f} CPU s ({pg:.2f} PostgreSQL), {healthy} healthy; "
                  f"fleet {processes_cpu_s(fleet_pids) - fleet0:.2f} CPU s", file=sys.stderr)
            if round_no > 0:  # round 0 creates the series and baselines
                results.append({"wall_s": wall, "cpu_s": cpu, "healthy": healthy, "deltas": deltas})
            time.sleep(1.0)  # let the counters move between rounds
    return results


def prometheus_metric(port: int, name: str) -> float:
    """Sum of the metric's samples on Prometheus' own page (2.42 splits samples appended by `type`)."""
    from telemetry.parsing import parse

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:  # noqa: S310
        samples = parse(response.read().decode(), names={name})
    if not samples:
        raise RuntimeError(f"{name} not on Prometheus' page")
    return sum(s.value for s in samples)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prometheus_run(targets: list[str], *, interval_s: int, windows: int, window_s: float) -> list[dict] | str:
    binary = shutil.which("prometheus")
    if binary is None:
        return "Prometheus not installed (`apt-get install prometheus`)"
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-prom-"))
    port = free_port()
    # Every engine has its own path, so one job per path (Prometheus sets the path per job).
    by_path: dict[str, list[str]] = {}
    for url in targets:
        hostport, path = url.removeprefix("http://").split("/", 1)
        by_path.setdefault("/" + path, []).append(hostport)
    lines = ["global:", f"  scrape_interval: {interval_s}s", f"  scrape_timeout: {interval_s}s", "scrape_configs:"]
    for n, (path, hosts) in enumerate(sorted(by_path.items())):
        lines += [f"  - job_name: e{n}", f"    metrics_path: {path}", "    static_configs:",
                  "      - targets: [" + ", ".join(f"'{h}'" for h in hosts) + "]"]
    (tmp / "prometheus.yml").write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                prometheus_metric(port, "prometheus_tsdb_head_samples_appended_total")
                break
            except (OSError, RuntimeError):  # not listening yet, or the TSDB not open yet
                if time.monotonic() > deadline or proc.poll() is not None:
                    return "Prometheus did not start: " + (proc.stderr.read().decode()[-300:] if proc.stderr else "")
                time.sleep(0.3)
        time.sleep(interval_s * 2)  # warm up: first scrapes create the series
        results = []
        for _ in range(windows):
            s0 = prometheus_metric(port, "prometheus_tsdb_head_samples_appended_total")
            c0 = prometheus_metric(port, "process_cpu_seconds_total")
            time.sleep(window_s)
            s1 = prometheus_metric(port, "prometheus_tsdb_head_samples_appended_total")
            c1 = prometheus_metric(port, "process_cpu_seconds_total")
            results.append({"samples": s1 - s0, "cpu_s": c1 - c0, "version": version})
        return results
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--fleets", type=int, default=4)
    ap.add_argument("--prometheus-interval", type=int, default=5)
    args = ap.parse_args()

    fleet = Fleet(args.endpoints, args.fleets)
    urls = fleet.urls
    try:
        import django

        ensure_database()
        django.setup()
        ids = setup_database(urls)
        samples = page_samples(urls)
        ours = our_rounds(ids, args.rounds, fleet.pids)
        prom = prometheus_run(urls, interval_s=args.prometheus_interval, windows=3,
                              window_s=args.prometheus_interval * 2)
    finally:
        fleet.stop()

    wall = statistics.median(r["wall_s"] for r in ours)
    cpu = statistics.median(r["cpu_s"] for r in ours)
    ours_per_core = samples / cpu
    healthy = min(r["healthy"] for r in ours)
    print("## Scrape round vs Prometheus (`bench/scrape_round.py`)")
    print()
    print(f"{args.endpoints} loopback endpoints of the simulated engine fleet ({', '.join(SIMULATED_KINDS)}; "
          f"{samples} samples per round of pages) served by {args.fleets} processes. Ours: the batch path "
          f"(`endpoints_scrape`, batches of {BATCH}, {WORKERS} processes), median of {len(ours)} rounds after the "
          "baseline round; CPU = scraping processes + PostgreSQL. Prometheus: same targets, "
          f"{args.prometheus_interval} s interval, medians of 3 windows. Both share the 2 cores with the fleet.")
    print()
    print("| measure | ours | Prometheus | ratio |")
    print("|---|---|---|---|")
    print(f"| round wall time, {args.endpoints} endpoints (target ≤ 2 s) | {wall:.2f} s | – | – |")
    print(f"| healthy endpoints per round (min) | {healthy} | – | – |")
    print(f"| usage deltas written per round (median) | {statistics.median(r['deltas'] for r in ours):.0f} | – | – |")
    print(f"| CPU seconds per round | {cpu:.2f} | – | – |")
    if isinstance(prom, str):
        print(f"| page samples / CPU-second (target ≥ 0.5× Prometheus) | {ours_per_core:,.0f} | not measured: "
              f"{prom} | – |")
    else:
        prom_per_core = statistics.median(w["samples"] / w["cpu_s"] for w in prom if w["cpu_s"] > 0)
        print(f"| page samples / CPU-second (target ≥ 0.5× Prometheus) | {ours_per_core:,.0f} | "
              f"{prom_per_core:,.0f} ({prom[0]['version']}) | {ours_per_core / prom_per_core:.2f}× |")
    print()
    return 0 if healthy == args.endpoints else 1


if __name__ == "__main__":
    sys.exit(main())
