"""A real Celery worker on a real Redis broker: reports queued faster than one-by-one ingest would take them
are taken in batches by `gpu_report_ingest_task` (its own report plus those waiting behind it), every one
stored once, and the queue ends empty with nothing left unacknowledged."""

from __future__ import annotations

import datetime as dt
import os
import re

import pytest
import redis as redis_client
from celery import Celery
from django.db import connection
from django.utils import timezone

from sites.choices import GpuStatus
from sites.models import Gpu
from telemetry.collectors.nvml import reading_to_dict
from telemetry.models import GpuSample
from telemetry.retention import gpu_sample_partitions_ensure_ahead
from tests.reliability.procs import Redis, Worker, wait_until, worker_env
from tests.telemetry.fake_pynvml import h100
from tests.telemetry.gpu_support import Rig

pytestmark = pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                                reason="the worker needs the PostgreSQL test database")

INGEST_TASK = "telemetry.tasks.gpu.gpu_report_ingest_task"


@pytest.fixture
def broker():
    server = Redis()
    server.start()
    yield server
    server.stop()


def test_waiting_reports_are_ingested_in_batches_once_each(transactional_db, world, broker, tmp_path) -> None:
    # given: 40 cycles of node-a's two GPUs waiting in the ingest queue, plus one report naming node B's GPU
    rig = Rig([h100(0), h100(1)], start=timezone.now() - dt.timedelta(minutes=10))
    reports = []
    for _ in range(40):
        reports.append(rig.read())
        rig.tick(10)
    thief = Rig([h100(7, uuid=world.gpu_b.uuid)], start=timezone.now() - dt.timedelta(minutes=5)).read()
    gpu_sample_partitions_ensure_ahead(today=timezone.now().date())
    producer = Celery("drain-producer", broker=broker.url)
    try:
        for report in reports[:20] + [thief] + reports[20:] + reports[:5]:  # and 5 delivered twice
            producer.send_task(INGEST_TASK, args=[world.node_a.pk, reading_to_dict(report)], queue="ingest")
    finally:
        producer.close()
    env = worker_env(broker_url=broker.url, db_name=connection.settings_dict["NAME"], var_dir=tmp_path / "var",
                     GPU_INGEST_BATCH_MAX="16", CELERY_WORKER_PREFETCH_MULTIPLIER="1")
    # when: one worker process takes them
    worker = Worker(env, queues="ingest", name="drain", log=tmp_path / "drain.log")
    try:
        worker.wait_ready()
        wait_until(lambda: GpuSample.objects.count() >= 80, timeout_s=60, what="all 80 samples")
        queue = redis_client.Redis.from_url(broker.url)
        wait_until(lambda: queue.llen("ingest") == 0 and not queue.hlen("unacked"), timeout_s=30,
                   what="the queue to drain and every message to be acknowledged")
    finally:
        worker.stop()
    # then: every reading once, the batches larger than one and never over the limit, the thief refused alone
    log = (tmp_path / "drain.log").read_text()
    sizes = [int(n) for n in re.findall(r"'reports': (\d+)", log)]
    assert GpuSample.objects.count() == 80 and sum(sizes) == 46, (sizes, log[-3000:])
    assert max(sizes) > 1 and max(sizes) <= 16, sizes
    assert "registered on another node" in log and Gpu.objects.get(pk=world.gpu_b.pk).node_id == world.node_b.pk
    assert Gpu.objects.get(uuid=h100(1).uuid).status == GpuStatus.OK


def test_drained_reports_keep_their_poll_orders_clock(transactional_db, world, broker, tmp_path) -> None:
    # given: 30 polled cycles of a node whose clock runs 5 minutes ahead, each queued with its poll order's
    # central timestamp (`ordered_at`, `window_s`), as `gpu_node_poll` sends them
    skew = dt.timedelta(minutes=5)
    true_start = timezone.now() - dt.timedelta(minutes=6)
    rig = Rig([h100(0), h100(1)], start=true_start + skew)
    gpu_sample_partitions_ensure_ahead(today=timezone.now().date())
    producer = Celery("drain-producer", broker=broker.url)
    try:
        for i in range(30):
            ordered_at = (true_start + dt.timedelta(seconds=10 * i)).isoformat()
            producer.send_task(INGEST_TASK, args=[world.node_a.pk, reading_to_dict(rig.read())],
                               kwargs={"ordered_at": ordered_at, "window_s": 10}, queue="ingest")
            rig.tick(10)
    finally:
        producer.close()
    env = worker_env(broker_url=broker.url, db_name=connection.settings_dict["NAME"], var_dir=tmp_path / "var",
                     GPU_INGEST_BATCH_MAX="16", CELERY_WORKER_PREFETCH_MULTIPLIER="1")
    # when: one worker takes them in batches
    worker = Worker(env, queues="ingest", name="drain-clock", log=tmp_path / "drain.log")
    try:
        worker.wait_ready()
        wait_until(lambda: GpuSample.objects.count() >= 60, timeout_s=60, what="all 60 samples")
    finally:
        worker.stop()
    # then: every sample re-timed onto the server's clock (each at its poll order's instant), none in the future,
    # and the node's offset recorded
    log = (tmp_path / "drain.log").read_text()
    assert max(int(n) for n in re.findall(r"'reports': (\d+)", log)) > 1, log[-3000:]
    stamps = sorted(set(GpuSample.objects.values_list("ts", flat=True)))
    assert stamps == [true_start + dt.timedelta(seconds=10 * i) for i in range(30)]
    assert stamps[-1] <= timezone.now()
    world.node_a.refresh_from_db()
    assert world.node_a.clock_offset_s == pytest.approx(300, abs=1)
