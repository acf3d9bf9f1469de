"""Real processes failing under the ingest and metering path: a Celery worker SIGKILLed in the middle of an
ingest batch, and the Redis broker restarted while workers run. Afterwards every token and joule is counted
exactly once: tokens against what the loopback engine served after its baseline, energy against the fake
GPUs' counters (NVML is the only fake, at the pynvml boundary).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal

import psycopg
import pytest
from celery import Celery
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from sites.models import Gpu
from telemetry.collectors.nvml import reading_to_dict
from telemetry.models import GpuRollup1m, GpuSample
from telemetry.models.metering import CounterSnapshot, UsageDelta
from telemetry.retention import gpu_sample_partitions_ensure_ahead
from telemetry.rollups import gpu_rollups_run
from tests import factories
from tests.reliability.engines import EngineFleet
from tests.reliability.procs import Redis, Worker, wait_until, worker_env
from tests.telemetry.fake_pynvml import h100
from tests.telemetry.gpu_support import Rig

pytestmark = pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                                reason="workers need the PostgreSQL test database")

INGEST_TASK = "telemetry.tasks.gpu.gpu_report_ingest_task"
SCRAPE_TASK = "telemetry.endpoints_scrape_task"


def report(name: str, figures: dict) -> None:
    print(f"RELIABILITY {name} {json.dumps(figures, sort_keys=True, default=str)}")


@pytest.fixture
def redis():
    r = Redis()
    r.start()
    yield r
    r.stop()


@pytest.fixture
def producer(redis):
    """A bare Celery client on the test's broker (the test settings run tasks eagerly; this one sends)."""
    app = Celery("reliability-producer", broker=redis.url)
    app.conf.broker_connection_retry_on_startup = True
    yield app
    app.close()


@pytest.fixture
def start_worker(redis, tmp_path):
    started: list[Worker] = []

    def start(queues: str, name: str, *, env_extra: dict[str, str] | None = None, **options) -> Worker:
        """A worker on `queues`; `env_extra` adds to its environment, `options` go to `Worker` (launcher, app)."""
        env = worker_env(broker_url=redis.url, db_name=connection.settings_dict["NAME"], var_dir=tmp_path / "var",
                         **(env_extra or {}))
        worker = Worker(env, queues=queues, name=name, log=tmp_path / f"{name}.log", **options)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


def gpu_reports(count: int, *, start: dt.datetime) -> tuple[list, dict[str, Decimal]]:
    """`count` NVML cycles 10 s apart of two fake H100s with uneven power; and each GPU's true energy (J)
    between its first and last reading (the counter difference)."""
    rig = Rig([h100(0), h100(1)], hostname="node-a", start=start)
    reports = []
    for step in range(count):
        reports.append(rig.read())
        for i, gpu in enumerate(rig.nvml.gpus):
            gpu.power_mw = 300_000 + (step * 7919 + i * 104_729) % 350_001
        rig.tick(10)
    first, last = reports[0], reports[-1]
    truth = {g.uuid: Decimal(lg.energy_mj - g.energy_mj) / 1000 for g, lg in zip(first.gpus, last.gpus, strict=True)}
    return reports, truth


def rollup_energy() -> dict[str, Decimal]:
    now = timezone.now()
    gpu_rollups_run(now=now)
    gpu_rollups_run(now=now)  # twice: nothing changes
    return {uuid: GpuRollup1m.objects.filter(gpu__uuid=uuid).aggregate(e=Sum("energy_j"))["e"]
            for uuid in Gpu.objects.filter(uuid__startswith="GPU-h100").values_list("uuid", flat=True)}


def _blocked_query(*, exclude_pid: int) -> str | None:
    """The statement of a backend of this database waiting for a lock (the worker's batch), if any."""
    with connection.cursor() as c:
        c.execute("SELECT query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = "
                  "'Lock' AND pid <> %s AND pid <> pg_backend_pid()", [exclude_pid])
        row = c.fetchone()
    return row[0] if row else None


def test_worker_sigkilled_mid_ingest_batch_loses_and_doubles_nothing(transactional_db, world, producer,
                                                                     start_worker) -> None:
    # given: 24 readings of two GPUs, and the raw sample table locked so the first worker's batch blocks
    # half-way (inventory already updated in its transaction, COPY of the samples waiting)
    reports, truth = gpu_reports(24, start=timezone.now() - dt.timedelta(minutes=10))
    gpu_sample_partitions_ensure_ahead(today=timezone.now().date())  # so the batch blocks in its COPY
    dsn = connection.get_connection_params()
    locker = psycopg.connect(**{k: v for k, v in dsn.items() if k != "cursor_factory"})
    try:
        locker.execute("LOCK TABLE telemetry_gpusample IN SHARE MODE")
        first = start_worker("ingest", "w1")
        for r in reports[:8]:
            producer.send_task(INGEST_TASK, args=[world.node_a.pk, reading_to_dict(r)], queue="ingest")
        blocked = wait_until(lambda: _blocked_query(exclude_pid=locker.info.backend_pid), timeout_s=45,
                             what="the worker's batch to block on the lock")
        # when: the worker dies without any chance to clean up, then the lock goes away
        first.kill()
    finally:
        locker.close()
    wait_until(lambda: not _blocked_query(exclude_pid=0), timeout_s=30,
               what="the killed worker's backend to roll back")
    assert GpuSample.objects.count() == 0  # nothing of the interrupted batch was committed
    second = start_worker("ingest", "w2")
    for r in reports[8:]:
        producer.send_task(INGEST_TASK, args=[world.node_a.pk, reading_to_dict(r)], queue="ingest")
    # the killed worker's unacknowledged messages come back after the visibility timeout (5 s here)
    wait_until(lambda: GpuSample.objects.count() >= 48, timeout_s=50, what="all 48 samples")
    second.stop()
    # then: every reading once, and the energy equals the counters' difference exactly
    assert GpuSample.objects.count() == 48
    energy = rollup_energy()
    report("sigkill_mid_ingest", {"blocked_in": blocked[:60], "samples": 48, "expected_samples": 48,
                                  "energy_j": energy, "truth_j": truth})
    assert energy == truth


def test_broker_restart_while_workers_run_keeps_tokens_and_energy_exact(transactional_db, world, producer, redis,
                                                                        start_worker) -> None:
    # given: a worker on `scrape` and `ingest`, a loopback vLLM engine and two fake GPUs
    with EngineFleet() as fleet:
        engine = fleet.add("vllm", prompt=5_000, generation=20_000)
        endpoint = factories.ServingEndpointFactory(site=world.site_a, metrics_url=fleet.url("vllm"))
        reports, truth = gpu_reports(12, start=timezone.now() - dt.timedelta(minutes=5))
        workers = [start_worker("scrape,ingest", "w1")]

        def supervise() -> None:
            # What systemd's Restart=always does in production (docs/reliability.md): kombu 5.7's Redis transport
            # sometimes dies with "Unrecoverable error: AttributeError" while restoring unacknowledged messages
            # on a lost connection; the worker's main process exits and a supervisor starts it again.
            if workers[-1].proc.poll() is not None:
                assert "Unrecoverable error" in workers[-1].log_path.read_text(), workers[-1].log_path.read_text()
                workers.append(start_worker("scrape,ingest", f"w{len(workers) + 1}"))

        def one_round(i: int) -> None:
            snapshots = CounterSnapshot.objects.filter(series__endpoint=endpoint).count()
            samples = GpuSample.objects.count()
            producer.send_task(SCRAPE_TASK, kwargs={"endpoint_ids": [endpoint.pk]}, queue="scrape")
            producer.send_task(INGEST_TASK, args=[world.node_a.pk, reading_to_dict(reports[i])], queue="ingest")

            def done() -> bool:
                supervise()
                return (CounterSnapshot.objects.filter(series__endpoint=endpoint).count() > snapshots
                        and GpuSample.objects.count() > samples)

            wait_until(done, timeout_s=45, what=f"round {i}")

        one_round(0)  # the engine's baseline
        for i in range(1, 5):
            engine.work(1000 + i, 3000 + i)
            one_round(i)
        # when: messages are in flight as the broker goes away; Redis has no persistence, they may be lost
        engine.work(777, 999)
        for i in range(5, 8):
            producer.send_task(SCRAPE_TASK, kwargs={"endpoint_ids": [endpoint.pk]}, queue="scrape")
            producer.send_task(INGEST_TASK, args=[world.node_a.pk, reading_to_dict(reports[i])], queue="ingest")
        redis.restart()
        for i in range(8, 12):
            engine.work(500 + i, 800 + i)
            one_round(i)
        # then
        counted = UsageDelta.objects.filter(endpoint=endpoint).aggregate(p=Sum("prompt_tokens"),
                                                                         g=Sum("generation_tokens"))
        energy = rollup_energy()
        samples = GpuSample.objects.count()
        report("broker_restart", {"tokens": [counted["p"], counted["g"]],
                                  "truth": [engine.truth_prompt, engine.truth_generation],
                                  "samples_stored": samples, "samples_sent": 24, "energy_j": energy, "truth_j": truth,
                                  "worker_restarts": len(workers) - 1})
        assert (counted["p"], counted["g"]) == (engine.truth_prompt, engine.truth_generation)
        assert energy == truth
        assert samples <= 24 and samples == GpuSample.objects.values("gpu", "ts").distinct().count()
