"""A real Celery worker on the embedded (filesystem) broker: the scheduler's poll for node-a reaches the
worker consuming `node.node-a`, whose report travels through `ingest` into PostgreSQL; node-b's poll waits
in `node.node-b`, which nobody consumes. NVML is the fake (GPU_READER_FACTORY), everything else is real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from telemetry.models import GpuSample
from tests.telemetry.fake_pynvml import h100

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60


def _env(tmp_path: Path) -> dict[str, str]:
    parts = urlsplit(os.environ["DATABASE_URL"])
    test_db_url = urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "factory_portal.settings", "DATABASE_URL": test_db_url,
           "DATABASE_CONN_MAX_AGE": "0", "VAR_DIR": str(tmp_path / "var"), "CELERY_BROKER_URL": "filesystem://",
           "CELERY_TASK_ALWAYS_EAGER": "0", "SECRET_KEY": "test-only", "PYTHONPATH": str(ROOT),
           "GPU_READER_FACTORY": "tests.telemetry.fake_pynvml:demo_reader", "FAKE_NVML_HOSTNAME": "node-a"}
    return env


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                    reason="the worker needs the PostgreSQL test database")
def test_polls_are_routed_to_the_nodes_queue_and_readings_to_ingest(transactional_db, world, tmp_path) -> None:
    # given: a worker that consumes node-a's queue and the ingest queue
    env = _env(tmp_path)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "factory_portal", "worker", "-Q", "node.node-a,ingest", "-P", "solo",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-n", "node-a@test", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        # when: one scheduler tick, as beat would send it
        tick = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c",
             "from telemetry.tasks.gpu import gpu_polls_schedule_task; print(gpu_polls_schedule_task())"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert tick.returncode == 0, tick.stderr
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and GpuSample.objects.filter(gpu__uuid=h100(1).uuid).count() < 1:
            time.sleep(0.5)
        # then
        assert tick.stdout.strip().splitlines()[-1] == "2"  # node-a and node-b were due
        samples = GpuSample.objects.filter(gpu__node=world.node_a)
        assert samples.count() == 2, "the worker did not store node-a's readings in time"
        assert not GpuSample.objects.filter(gpu__node=world.node_b).exists()
        waiting = list((tmp_path / "var" / "broker" / "queue").glob("*.node.node-b.msg"))
        assert len(waiting) == 1  # node-b's poll waits in its own queue (and expires after one interval)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
