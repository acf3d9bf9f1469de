"""PostgreSQL restarted (`pg_ctl restart -m fast`) and crashed (`-m immediate`) while real Celery workers on
`scrape` and `ingest` write to it, each time with a scrape and an ingest caught half-way through their
transactions. The database is a private cluster of this test (the suite's shared one serves the other xdist
workers), migrated with `manage.py migrate`; the broker is a real Redis; the engine a loopback vLLM page; NVML the
only fake. Afterwards every token and joule is counted exactly once, and the same worker processes go on.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import psycopg
from celery import Celery
from django.utils import timezone

from telemetry.collectors.nvml import reading_to_dict
from tests.reliability.engines import EngineFleet
from tests.reliability.private_pg import PrivatePostgres
from tests.reliability.procs import ROOT, Redis, Worker, wait_until
from tests.reliability.test_process_faults import INGEST_TASK, SCRAPE_TASK, gpu_reports, report

LOCK_SQL = ("LOCK TABLE telemetry_gpusample IN SHARE MODE; "  # the ingest blocks in its sample write
            "LOCK TABLE sites_servingendpoint IN EXCLUSIVE MODE")  # the scrape blocks in `SELECT … FOR UPDATE`
BLOCKED_SQL = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
               "AND wait_event_type = 'Lock'")


def _env(pg: PrivatePostgres, redis: Redis, var_dir: Path) -> dict[str, str]:
    # The production settings module, with its own connection settings (CONN_MAX_AGE 60 s, health checks on):
    # the recovery under test is the one production gets.
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_CONN_MAX_AGE"}
    return {**env, "DJANGO_SETTINGS_MODULE": "factory_portal.settings", "DATABASE_URL": pg.url,
            "VAR_DIR": str(var_dir), "CELERY_BROKER_URL": redis.url, "CELERY_TASK_ALWAYS_EAGER": "0",
            "SECRET_KEY": "test-only", "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO"}


def _ops(env: dict[str, str], *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "tests.reliability.private_db_ops", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_postgres_restarted_and_crashed_under_workers_counts_every_token_and_joule_once(tmp_path) -> None:
    started = time.monotonic()
    pg = PrivatePostgres()
    redis = Redis()
    workers: list[Worker] = []
    producer = Celery("reliability-producer", broker=redis.url)
    try:
        # given: a private cluster migrated like production, a loopback engine, two workers, two fake GPUs
        pg.start()
        env = _env(pg, redis, tmp_path / "var")
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=120)
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        setup_s = time.monotonic() - started
        with EngineFleet() as fleet:
            engine = fleet.add("vllm", prompt=5_000, generation=20_000)
            ids = _ops(env, "setup", fleet.url("vllm"))
            node_id, endpoint_id = ids["node_id"], ids["endpoint_id"]
            redis.start()
            workers = [Worker(env, queues=q, name=f"w-{q}", log=tmp_path / f"{q}.log") for q in ("scrape", "ingest")]
            for w in workers:
                w.wait_ready()
            pids = [w.proc.pid for w in workers]
            reports, truth = gpu_reports(16, start=timezone.now() - dt.timedelta(minutes=10))
            sent = iter(range(len(reports)))

            def snapshots() -> int:
                return pg.scalar("SELECT count(*) FROM telemetry_countersnapshot s JOIN telemetry_engineseries e "
                                 "ON e.id = s.series_id WHERE e.endpoint_id = %s", (endpoint_id,))

            def samples() -> int:
                return pg.scalar("SELECT count(*) FROM telemetry_gpusample")

            def send_round(*, work: tuple[int, int] | None) -> None:
                if work:
                    engine.work(*work)
                producer.send_task(SCRAPE_TASK, kwargs={"endpoint_ids": [endpoint_id]}, queue="scrape")
                producer.send_task(INGEST_TASK, args=[node_id, reading_to_dict(reports[next(sent)])], queue="ingest")

            def round_trip(i: int, *, work: tuple[int, int] | None) -> None:
                before = (snapshots(), samples())
                send_round(work=work)
                wait_until(lambda: snapshots() > before[0] and samples() > before[1], timeout_s=30,
                           what=f"round {i} to be stored")

            def fault(mode: str, i: int) -> float:
                """A scrape and an ingest blocked half-way through their transactions (locks held by another
                session), then the server restarted under them, while two more rounds are sent."""
                locker = psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname=pg.db_name)
                locker.execute(LOCK_SQL)
                send_round(work=(300 + i, 700 + i))
                wait_until(lambda: pg.scalar(BLOCKED_SQL) >= 2, timeout_s=30,
                           what="the scrape and the ingest to block inside their transactions")
                took: list[float] = []
                restart = threading.Thread(target=lambda: took.append(pg.restart(mode)))
                restart.start()
                for k in range(2):
                    send_round(work=(40 + k, 90 + k))
                    time.sleep(0.3)
                restart.join(timeout=60)
                locker.close()
                return took[0]

            round_trip(0, work=None)  # the engine's baseline scrape; the first GPU reading
            for i in range(1, 4):
                round_trip(i, work=(1_000 + i, 3_000 + i))
            # when: a clean restart, traffic, a crash, traffic
            fast_s = fault("fast", 4)
            for i in range(7, 9):
                round_trip(i, work=(500 + i, 800 + i))
            immediate_s = fault("immediate", 9)
            for i in range(12, 16):
                round_trip(i, work=(600 + i, 900 + i))
            wait_until(lambda: samples() >= 2 * len(reports), timeout_s=45, what="every GPU reading")
            final = (engine.prompt, engine.generation)
            wait_until(lambda: pg.scalar("SELECT count(*) FROM telemetry_countersnapshot WHERE prompt_tokens = %s "
                                         "AND generation_tokens = %s", final), timeout_s=30,
                       what="a scrape of the final counters")
            alive = [w.proc.poll() is None for w in workers]
            retries = {w.log_path.stem: w.log_path.read_text().count(" retry: Retry in ") for w in workers}
            for w in workers:
                w.stop()
            totals = _ops(env, "totals", str(endpoint_id))
        # then
        energy = {uuid: Decimal(v["minute_j"]) for uuid, v in totals["energy"].items()}
        hourly = {uuid: Decimal(v["hour_j"]) for uuid, v in totals["energy"].items()}
        tokens_truth = [engine.truth_prompt, engine.truth_generation]
        report("postgres_restart", {
            "tokens_deltas": totals["tokens_deltas"], "tokens_hourly": totals["tokens_hourly"],
            "tokens_daily": totals["tokens_daily"], "tokens_truth": tokens_truth,
            "energy_j": energy, "truth_j": truth, "samples": totals["samples"], "samples_sent": 2 * len(reports),
            "distinct_samples": totals["distinct_samples"], "snapshots": totals["snapshots"],
            "retries_in_worker_logs": retries, "restart_fast_s": round(fast_s, 2),
            "restart_immediate_s": round(immediate_s, 2), "setup_s": round(setup_s, 1),
            "test_s": round(time.monotonic() - started, 1)})
        # both faults caught a scrape and an ingest mid-transaction: each failed at least once and was retried
        assert retries["ingest"] >= 2 and retries["scrape"] >= 2, retries
        assert alive == [True, True] and [w.proc.pid for w in workers] == pids  # recovered, never restarted
        assert totals["tokens_deltas"] == totals["tokens_hourly"] == totals["tokens_daily"] == tokens_truth
        assert energy == hourly == truth
        assert totals["samples"] == totals["distinct_samples"] == 2 * len(reports)
    finally:
        for w in workers:
            w.stop()
        producer.close()
        redis.stop()
        pg.stop()

