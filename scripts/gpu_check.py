"""`make gpu-check`: the portal against THIS machine's real GPUs, end to end, and a report of what it stored.

Run it on a GPU node (driver loaded, `nvidia-smi` works). On a throwaway SQLite database and file broker under a
temporary directory (your var/ is not touched) it:

1. reads NVML through `nvml_probe` and times the reader over many cycles (per cycle and per GPU);
2. runs `migrate` and `bootstrap` with DEMO=0, which registers this machine as a node ("This machine") because
   NVML sees GPUs, then starts the Celery worker with beat (the node queue `node.<hostname>` and the central
   queues, as `make run` does) and the web server on 127.0.0.1, and lets them poll for `--seconds`;
   `--load CMD` starts a GPU load (any command) a third of the way in, so idle and busy readings are both stored;
3. logs in over HTTP and fetches the site page, its live JSON, the GPU's page and live JSON;
4. switches the node to the push agent through the REST API (agent token, collector mode) and runs
   `gpu_agent --cycles 3` against the web server;
5. writes `report.json` and `report.md` to `--out`: the GPUs, sample counts, ranges, the energy counter's delta
   against the integral of the power readings, rollups, HTTP statuses, timings.

Exit status 0 only when every step did what it should (see `checks` in the report).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], env: dict, log: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    with log.open("a") as f:
        f.write(f"$ {shlex.join(cmd)}\n[exit {result.returncode}]\n{result.stdout}{result.stderr}\n")
    return result


def _reader_timing(cycles: int) -> dict:
    from telemetry.collectors.nvml import NvmlReader

    reader = NvmlReader()
    started = time.perf_counter()
    first = reader.read()
    init_ms = (time.perf_counter() - started) * 1000
    times_ms = []
    for _ in range(cycles):
        started = time.perf_counter()
        reading = reader.read()
        times_ms.append((time.perf_counter() - started) * 1000)
    reader.shutdown()
    gpus = max(1, len(first.gpus))
    times_ms.sort()
    return {"gpus": len(first.gpus), "first_read_with_init_ms": round(init_ms, 2), "cycles": cycles,
            "cycle_median_ms": round(statistics.median(times_ms), 3),
            "cycle_p95_ms": round(times_ms[round(0.95 * len(times_ms)) - 1], 3),
            "per_gpu_median_ms": round(statistics.median(times_ms) / gpus, 3),
            "faults": len(reading.faults), "error": reading.error}


def _energy_check(samples: list) -> dict:
    """The NVML energy counter's delta (mJ → J) against the trapezoid integral of the power readings (W × s)."""
    with_both = [s for s in samples if s.energy_mj is not None and s.power_w is not None]
    if len(with_both) < 2:
        return {"compared": False}
    counter_j = (with_both[-1].energy_mj - with_both[0].energy_mj) / 1000
    integral_j = sum((b.ts - a.ts).total_seconds() * (a.power_w + b.power_w) / 2
                     for a, b in zip(with_both, with_both[1:], strict=False))
    return {"compared": True, "samples": len(with_both),
            "span_s": (with_both[-1].ts - with_both[0].ts).total_seconds(),
            "counter_delta_j": round(counter_j, 1), "power_integral_j": round(integral_j, 1),
            "ratio": round(counter_j / integral_j, 4) if integral_j else None}


def _stored(started_at: dt.datetime) -> dict:
    from django.db.models import Count, Max, Min

    from sites.models import Gpu, Node
    from telemetry.models import GpuRollup1m, GpuSample, SiteGpuRollup1m

    out: dict = {"nodes": [], "gpus": []}
    for node in Node.objects.select_related("site"):
        out["nodes"].append({"hostname": node.hostname, "site": node.site.name, "site_slug": node.site.slug,
                             "id": node.pk, "status": getattr(node, "status", None),
                             "last_seen_at": str(getattr(node, "last_seen_at", ""))})
    for gpu in Gpu.objects.select_related("node"):
        samples = list(GpuSample.objects.filter(gpu=gpu, ts__gte=started_at).order_by("ts"))
        by_source = dict(GpuSample.objects.filter(gpu=gpu).values_list("source").annotate(n=Count("*")))
        utils = [s.util_pct for s in samples if s.util_pct is not None]
        powers = [s.power_w for s in samples if s.power_w is not None]
        rollups = GpuRollup1m.objects.filter(gpu=gpu).aggregate(n=Count("*"), first=Min("bucket"), last=Max("bucket"))
        out["gpus"].append({
            "id": gpu.pk, "uuid": gpu.uuid, "name": gpu.name, "index": gpu.index, "node": gpu.node.hostname,
            "memory_total_bytes": gpu.memory_total_bytes, "driver_version": gpu.driver_version,
            "cuda_driver_version": gpu.cuda_driver_version, "mig_mode": gpu.mig_mode, "status": gpu.status,
            "simulated": gpu.simulated, "samples": len(samples), "samples_by_source": by_source,
            "util_pct": {"min": min(utils), "max": max(utils)} if utils else None,
            "power_w": {"min": min(powers), "max": max(powers), "mean": round(statistics.mean(powers), 1)}
            if powers else None,
            "temperature_c_max": max((s.temperature_c for s in samples if s.temperature_c is not None), default=None),
            "sm_clock_mhz_max": max((s.sm_clock_mhz for s in samples if s.sm_clock_mhz is not None), default=None),
            "energy": _energy_check([s for s in samples if s.source == "nvml"]),
            "rollups_1m": {"count": rollups["n"], "first": str(rollups["first"]), "last": str(rollups["last"])},
        })
    out["site_rollups_1m"] = SiteGpuRollup1m.objects.count()
    return out


def _login(client: httpx.Client, password: str) -> int:
    client.get("/accounts/login/")
    response = client.post("/accounts/login/", data={
        "username": "admin", "password": password, "csrfmiddlewaretoken": client.cookies.get("csrftoken", "")},
        headers={"Referer": str(client.base_url) + "/accounts/login/"})
    return response.status_code


def _pages(client: httpx.Client, site_slug: str, gpu_id: int) -> dict:
    out = {}
    for path in [f"/sites/{site_slug}/", f"/sites/{site_slug}/live.json", f"/sites/{site_slug}/gpus/{gpu_id}/",
                 f"/sites/{site_slug}/gpus/{gpu_id}/live.json", f"/sites/{site_slug}/charts/power.json?range=1h"]:
        started = time.perf_counter()
        response = client.get(path)
        entry = {"status": response.status_code, "ms": round((time.perf_counter() - started) * 1000, 1),
                 "bytes": len(response.content)}
        if path.endswith("live.json") and response.status_code == 200:
            entry["json"] = response.json()
        out[path] = entry
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120, help="how long the worker polls (default 120)")
    parser.add_argument("--load", default="", help="a command that loads the GPU, started a third of the way in")
    parser.add_argument("--read-cycles", type=int, default=200, help="NVML reads timed in step 1")
    parser.add_argument("--out", default=str(ROOT / "var" / "gpu-check"), help="where the report goes")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "gpu-check.log"
    log.write_text("")
    work = Path(tempfile.mkdtemp(prefix="fp-gpu-check-"))
    password = secrets.token_urlsafe(12)
    port = _free_port()
    env = {**os.environ, "VAR_DIR": str(work), "DATABASE_URL": f"sqlite:///{work}/db.sqlite3",
           "CACHE_URL": f"file://{work}/cache", "DEMO": "0", "ADMIN_PASSWORD": password, "PORT": str(port),
           "PYTHONUNBUFFERED": "1"}
    env.pop("CELERY_BROKER_URL", None)  # the file broker under VAR_DIR
    os.environ.update({k: env[k] for k in ("VAR_DIR", "DATABASE_URL", "CACHE_URL")})
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "factory_portal.settings")
    sys.path.insert(0, str(ROOT))
    py = sys.executable
    report: dict = {"started": dt.datetime.now(dt.UTC).isoformat(), "host": socket.gethostname(),
                    "python": sys.version.split()[0], "seconds": args.seconds, "load": args.load}
    checks: dict[str, bool] = {}

    # 1. the probe, and the reader's cost
    probe = _run([py, "manage.py", "nvml_probe"], env, log)
    probe_json = _run([py, "manage.py", "nvml_probe", "--json"], env, log)
    (out / "nvml_probe.txt").write_text(probe.stdout + probe.stderr)
    (out / "nvml_probe.json").write_text(probe_json.stdout)
    checks["probe"] = probe.returncode == 0 and probe_json.returncode == 0
    report["probe"] = json.loads(probe_json.stdout) if probe_json.returncode == 0 else probe_json.stderr.strip()
    report["reader_timing"] = _reader_timing(args.read_cycles)
    if not checks["probe"]:
        report["checks"] = checks
        (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
        print(f"NVML probe failed: {probe.stderr.strip()}", file=sys.stderr)
        return 1
    if shutil.which("nvidia-smi"):
        (out / "nvidia-smi.txt").write_text(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout)

    # 2. the portal as `make run` starts it, with no demo: bootstrap registers this machine
    checks["migrate"] = _run([py, "manage.py", "migrate", "--noinput"], env, log).returncode == 0
    boot = _run([py, "manage.py", "bootstrap"], env, log)
    checks["bootstrap_registers_this_machine"] = "NVML sees GPUs on this machine" in boot.stdout
    queues = _run([py, "manage.py", "bootstrap", "--worker-queues"], env, log).stdout.strip()
    report["worker_queues"] = queues
    processes = []
    worker_log = (out / "worker.log").open("w")
    web_log = (out / "web.log").open("w")
    host = socket.gethostname().split(".")[0]
    processes.append(subprocess.Popen(
        [py, "-m", "celery", "-A", "factory_portal", "worker", "-B", "--loglevel", "INFO", "-Q", queues,
         "--concurrency", "2", "--schedule", str(work / "celerybeat-schedule"), "-n", f"portal@{host}"],
        cwd=ROOT, env=env, stdout=worker_log, stderr=subprocess.STDOUT))
    processes.append(subprocess.Popen([py, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                                      cwd=ROOT, env=env, stdout=web_log, stderr=subprocess.STDOUT))
    started_at = dt.datetime.now(dt.UTC)
    load = None
    try:
        time.sleep(args.seconds / 3)
        if args.load:
            load = subprocess.Popen(args.load, shell=True, cwd=ROOT, stdout=(out / "load.log").open("w"),
                                    stderr=subprocess.STDOUT)
            report["load_started_at"] = dt.datetime.now(dt.UTC).isoformat()
        time.sleep(args.seconds * 2 / 3)

        # 3. what a partner sees, over HTTP
        import django

        django.setup()
        stored = _stored(started_at)
        report["stored"] = stored
        real = [g for g in stored["gpus"] if not g["simulated"]]
        checks["gpus_registered"] = bool(real) and {g["uuid"] for g in real} == {
            g["uuid"] for g in report["probe"]["gpus"]}
        checks["samples_stored_by_the_worker"] = all(g["samples"] >= max(2, int(args.seconds / 10) - 3) for g in real)
        checks["rollups_written"] = all(g["rollups_1m"]["count"] >= 1 for g in real)
        checks["energy_counter_agrees_with_power"] = all(
            not g["energy"]["compared"] or 0.8 <= g["energy"]["ratio"] <= 1.25 for g in real)
        site_slug = stored["nodes"][0]["site_slug"]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            checks["login"] = _login(client, password) == 302
            report["pages"] = _pages(client, site_slug, real[0]["id"])
        checks["pages"] = all(p["status"] == 200 for p in report["pages"].values())

        # 4. the push agent, switched on through the REST API
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            token = api.post("/api/v1/auth/token/", data={"username": "admin", "password": password}).json()["token"]
            api.headers["Authorization"] = f"Token {token}"
            node_id = stored["nodes"][0]["id"]
            agent_token = api.post(f"/api/v1/nodes/{node_id}/agent-token/").json()["token"]
            mode = api.put(f"/api/v1/nodes/{node_id}/gpu-collector/", json={"mode": "agent"})
            report["agent_mode_status"] = mode.status_code
        agent = _run([py, "manage.py", "gpu_agent", "--portal", f"http://127.0.0.1:{port}", "--token", agent_token,
                      "--cycles", "3", "--interval", "2"], env, log)
        report["agent"] = {"exit": agent.returncode, "pushed": re.findall(r"pushed: (.*)", agent.stdout)}
        from telemetry.models import GpuSample

        agent_samples = GpuSample.objects.filter(source="agent").count()
        checks["agent_pushes"] = agent.returncode == 0 and agent_samples == 3 * len(real)
        report["agent"]["samples"] = agent_samples
    finally:
        for process in [load, *processes]:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in [load, *processes]:
            if process is not None:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        report["checks"] = checks
        report["finished"] = dt.datetime.now(dt.UTC).isoformat()
        (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
        (out / "report.md").write_text(_markdown(report))
    print((out / "report.md").read_text())
    return 0 if checks and all(checks.values()) else 1


def _markdown(report: dict) -> str:
    lines = [f"# GPU check on {report['host']} ({report['started']})", ""]
    timing = report.get("reader_timing", {})
    lines.append(f"NVML reader: {timing.get('gpus')} GPU(s), first read with init "
                 f"{timing.get('first_read_with_init_ms')} ms, then {timing.get('cycle_median_ms')} ms per cycle "
                 f"(median of {timing.get('cycles')}, p95 "
                 f"{timing.get('cycle_p95_ms')}), {timing.get('per_gpu_median_ms')} ms per GPU.")
    for gpu in report.get("stored", {}).get("gpus", []):
        energy = gpu["energy"]
        lines.append(f"- {gpu['node']}/gpu{gpu['index']} {gpu['name']} {gpu['uuid']}: {gpu['samples']} samples by the "
                     f"worker, util {gpu['util_pct']}, power {gpu['power_w']} W, max {gpu['temperature_c_max']} °C, "
                     f"rollups {gpu['rollups_1m']['count']} minutes; energy counter {energy.get('counter_delta_j')} J "
                     f"vs ∫power {energy.get('power_integral_j')} J over {energy.get('span_s')} s "
                     f"(ratio {energy.get('ratio')})")
    for path, page in report.get("pages", {}).items():
        lines.append(f"- GET {path}: {page['status']} in {page['ms']} ms")
    if "agent" in report:
        lines.append(f"- gpu_agent --cycles 3: exit {report['agent']['exit']}, {report['agent']['samples']} samples")
    lines += ["", "Checks: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in report.get("checks", {}).items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
