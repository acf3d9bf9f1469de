"""Web tier under concurrent dashboard users, and whether the engine poller keeps its interval meanwhile.

    scripts/with_postgres.sh .venv/bin/python bench/web_load.py [--sites 20] [--runs 3] [--seconds 6]

Setup (created here): one partner with `--sites` sites × 4 nodes × 8 GPUs and 2 simulated engines per site
(telemetry/simulator/engines.py, served on 127.0.0.1). gunicorn (`--workers`, sync) serves the portal on
127.0.0.1; `wrk` (Debian package) drives it with `--connections` concurrent logged-in users for `--seconds`
per run, `--runs` runs per page, alternating pages; a Lua hook reports requests/s and p50/p95/p99 latency.
Meanwhile a separate process polls every endpoint through the real scrape path (`endpoints_scrape`: HTTP to
the simulated engines + PostgreSQL writes) every `--interval` seconds on a fixed schedule, first for a quiet
period then throughout the load; lateness = actual start − planned start. Everything stays on 127.0.0.1 and
the whole load phase is bounded (runs × pages × seconds, 36 s by default).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "factory_portal.settings")
# The seeding process signs the session that gunicorn must accept: both use this key.
os.environ.setdefault("SECRET_KEY", "bench-only")

LUA = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format('JSON {"rps": %.2f, "p50_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f, "requests": %d, '
    .. '"socket_errors": %d, "non_2xx": %d}\\n', summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.requests, errors, summary.errors.status))
end
"""


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(sites: int) -> tuple[str, list[str], list[tuple[int, str]]]:
    """The fleet; returns a logged-in session id, the site slugs, and (endpoint id, engine name) pairs."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from sites.models import Gpu, Membership, Node, Partner, ServingEndpoint, Site

    partner, _ = Partner.objects.get_or_create(name="Load", slug="load")
    user, _ = get_user_model().objects.get_or_create(username="load-operator")
    Membership.objects.get_or_create(user=user, partner=partner, defaults={"role": "owner"})
    now = timezone.now()
    slugs, endpoints = [], []
    for s in range(sites):
        defaults = {"name": f"Load site {s:02d}", "country": "NO", "city": "Oslo", "time_zone": "Europe/Oslo",
                    "contract_date": now.date(), "status": "live", "power_capacity_kw": Decimal("2000"),
                    "pue": Decimal("1.2"), "electricity_price_per_kwh": Decimal("0.08"),
                    "capex_per_gpu": Decimal("30000"), "currency": "USD"}
        site, created = Site.objects.get_or_create(partner=partner, slug=f"load-{s:02d}", defaults=defaults)
        slugs.append(site.slug)
        if created:
            for n in range(4):
                node = Node.objects.create(site=site, hostname=f"load-{s:02d}-n{n}", status="online", last_seen_at=now)
                Gpu.objects.bulk_create([
                    Gpu(node=node, uuid=f"GPU-load-{s:02d}-{n}-{g}", index=g, name="NVIDIA H100 80GB HBM3",
                        memory_total_bytes=85520809984, status="ok", last_seen_at=now) for g in range(8)])
            for e in range(2):
                ServingEndpoint.objects.create(site=site, name=f"vllm-{s:02d}-{e}", engine="vllm",
                                               metrics_url="http://127.0.0.1:9/metrics")
        endpoints += [(ep.pk, f"e{ep.pk}") for ep in ServingEndpoint.objects.filter(site=site)]
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client.cookies["sessionid"].value, slugs, endpoints


def poller(args: argparse.Namespace) -> None:
    """Child process: serve the simulated engines and poll them on a fixed schedule; print JSON lines."""
    import django

    django.setup()
    from sites.models import ServingEndpoint
    from telemetry.metering_services import endpoints_scrape
    from telemetry.simulator.engines import EmulatedEngine, EngineFleet

    ids = list(ServingEndpoint.objects.filter(site__partner__slug="load").values_list("pk", flat=True))
    fleet = EngineFleet([EmulatedEngine(name=f"e{i}", kind="vllm", models=["m"], seed=i) for i in ids]).start()
    for pk in ids:
        ServingEndpoint.objects.filter(pk=pk).update(metrics_url=fleet.url(f"e{pk}"))
    # Like beat with `expires` = interval: a slot missed while a poll overran is skipped, not replayed.
    start = time.monotonic() + args.interval
    deadline = time.monotonic() + args.poll_seconds
    slot = 0
    while True:
        planned = start + slot * args.interval
        if planned > deadline:
            break
        time.sleep(max(0.0, planned - time.monotonic()))
        began = time.monotonic()
        summary = endpoints_scrape(endpoint_ids=ids)
        ended = time.monotonic()
        print(json.dumps({"t": round(began, 3), "late_ms": round((began - planned) * 1000, 1),
                          "took_ms": round((ended - began) * 1000, 1), "healthy": summary.healthy,
                          "endpoints": summary.endpoints}), flush=True)
        slot = max(slot + 1, int((ended - start) // args.interval) + 1)
    fleet.stop()


def wrk(url: str, session: str, args: argparse.Namespace, lua: str) -> dict:
    out = subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "10s",
                          "-s", lua, "-H", f"Cookie: sessionid={session}", url],
                         capture_output=True, text=True, timeout=args.seconds + 30)
    line = next((x for x in out.stdout.splitlines() if x.startswith("JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no figures: {out.stdout} {out.stderr}")
    return json.loads(line[5:])


def _lateness(rows: list[dict]) -> str:
    if not rows:
        return "—"
    late = sorted(r["late_ms"] for r in rows)
    took = sorted(r["took_ms"] for r in rows)
    return (f"{len(rows)} | {statistics.median(late):.1f} | {late[-1]:.1f} | {statistics.median(took):.0f} | "
            f"{took[-1]:.0f} | {min(r['healthy'] for r in rows)}/{rows[0]['endpoints']}")


class _NoRedirect(__import__("urllib.request").request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--interval", type=float, default=3.0)
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds of polling before the load starts")
    parser.add_argument("--poller", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--poll-seconds", type=float, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.poller:
        poller(args)
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk).")
    _ensure_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    session, slugs, endpoints = seed(args.sites)
    from django.db import connections

    connections.close_all()

    env = {**os.environ, "DEBUG": "0", "PRODUCTION": "0", "ALLOWED_HOSTS": "127.0.0.1", "SECRET_KEY": "bench-only",
           "LOG_LEVEL": "WARNING"}
    port = _free_port()
    load_s = args.runs * 2 * (args.seconds + 1)
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "factory_portal.wsgi", "-b", f"127.0.0.1:{port}",
                            "-w", str(args.workers), "--log-level", "warning"], cwd=ROOT, env=env,
                           start_new_session=True)
    poll = subprocess.Popen([sys.executable, __file__, "--poller", "--interval", str(args.interval),
                             "--poll-seconds", str(args.quiet + load_s + 2)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    results: dict[str, list[dict]] = {"overview": [], "site": []}
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        import urllib.request

        probe = urllib.request.Request(f"http://127.0.0.1:{port}/sites/{slugs[0]}/",
                                       headers={"Cookie": f"sessionid={session}"})
        with urllib.request.build_opener(_NoRedirect).open(probe, timeout=30) as response:
            if response.status != 200:  # a redirect to the login page would measure the wrong thing
                sys.exit(f"the site page answered {response.status} to the load user")
        time.sleep(args.quiet)
        load_started = time.monotonic()
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(LUA)
        for run in range(args.runs):
            results["overview"].append(wrk(f"http://127.0.0.1:{port}/", session, args, f.name))
            results["site"].append(wrk(f"http://127.0.0.1:{port}/sites/{slugs[run % len(slugs)]}/", session,
                                       args, f.name))
        load_ended = time.monotonic()
        polls = [json.loads(x) for x in poll.communicate(timeout=120)[0].splitlines() if x.startswith("{")]
    finally:
        for proc in (web, poll):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
        os.unlink(f.name)

    quiet = [p for p in polls if p["t"] < load_started]
    loaded = [p for p in polls if load_started <= p["t"] <= load_ended]

    def med(page: str, key: str) -> float:
        return statistics.median(r[key] for r in results[page])

    gpus = args.sites * 32
    print("## Web tier under load (bench/web_load.py)\n")
    print(f"Seeded fleet: {args.sites} sites, {args.sites * 4} nodes, {gpus} GPUs, {len(endpoints)} simulated vLLM "
          f"endpoints. gunicorn {args.workers} sync workers on 127.0.0.1, DEBUG off; wrk 2 threads, "
          f"{args.connections} connections (logged-in partner owner), {args.seconds} s per run, {args.runs} runs per "
          f"page, alternating. Median of the runs; every response must be 2xx.\n")
    print("| page | requests/s | p50 (ms) | p95 (ms) | p99 (ms) | requests | non-2xx | socket errors |")
    print("|---|---|---|---|---|---|---|---|")
    for page, path in (("overview", "/"), ("site", "/sites/<slug>/")):
        rows = results[page]
        print(f"| {page} `{path}` | {med(page, 'rps'):.1f} | {med(page, 'p50_ms'):.1f} | {med(page, 'p95_ms'):.1f} | "
              f"{med(page, 'p99_ms'):.1f} | {sum(r['requests'] for r in rows)} | {sum(r['non_2xx'] for r in rows)} | "
              f"{sum(r['socket_errors'] for r in rows)} |")
    print(f"\nEngine poller (separate process, real scrape path: HTTP + PostgreSQL writes) every {args.interval:g} s "
          "on a fixed schedule (a slot missed while a poll overran is skipped, as beat's `expires` does); "
          "lateness = actual start − planned start.\n")
    print("| phase | polls | lateness median (ms) | lateness max (ms) | poll took median (ms) | poll took max (ms) "
          "| healthy endpoints (min) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| quiet | {_lateness(quiet)} |")
    print(f"| under web load | {_lateness(loaded)} |")
    bad = sum(r["non_2xx"] + r["socket_errors"] for rs in results.values() for r in rs)
    if bad:
        sys.exit(f"{bad} failed requests")


if __name__ == "__main__":
    main()
