"""The demo for real: `run_simulator` and a Celery worker with embedded beat (filesystem broker in a tmp folder),
against the test PostgreSQL. Within a bounded time the simulated GPUs' readings (polled on their node queues) and
the simulated engines' tokens (scraped over loopback HTTP) must arrive in the database through Celery."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from telemetry.models import GpuSample, UsageDelta
from telemetry.simulator.seed import demo_seed

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 90

pytestmark = pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                                reason="the worker needs the PostgreSQL test database")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, engine_port: int) -> dict[str, str]:
    parts = urlsplit(os.environ["DATABASE_URL"])
    test_db_url = urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "factory_portal.settings", "DATABASE_URL": test_db_url,
            "DATABASE_CONN_MAX_AGE": "0", "VAR_DIR": str(tmp_path / "var"), "CELERY_BROKER_URL": "filesystem://",
            "CELERY_TASK_ALWAYS_EAGER": "0", "SECRET_KEY": "test-only", "PYTHONPATH": str(ROOT),
            "DEMO_ENGINE_PORT": str(engine_port), "GPU_READER_FACTORY": ""}


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.django_db(transaction=True)
def test_gpu_readings_and_tokens_flow_through_celery_into_the_database(tmp_path, monkeypatch):
    # given: the demo seeded (no back-filled history: live data only), its engines on a free loopback port
    port = _free_port()
    monkeypatch.setenv("DEMO_ENGINE_PORT", str(port))
    demo_seed(password="demo-pass-123", days=0)
    started = timezone.now()
    env = _env(tmp_path, port)
    queues = subprocess.run([sys.executable, "manage.py", "bootstrap", "--worker-queues"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert "node.demo-osl-h100-01" in queues.split(",") and "scrape" in queues.split(",")
    processes = []
    try:
        # when: the simulator and one worker with beat, as `make run` starts them
        processes.append(subprocess.Popen(
            [sys.executable, "manage.py", "run_simulator"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT, start_new_session=True))
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "factory_portal", "worker", "-B", "-Q", queues, "--concurrency",
             "2", "--schedule", str(tmp_path / "beat-schedule"), "-n", "demo@test", "--without-heartbeat",
             "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + DEADLINE_S
        samples = GpuSample.objects.filter(ts__gt=started, source="sim", gpu__simulated=True)
        deltas = UsageDelta.objects.filter(interval_end__gt=started)
        while time.monotonic() < deadline:
            tokens = deltas.aggregate(g=Sum("generation_tokens"))["g"] or 0
            polled_gpus = samples.values("gpu").distinct().count()
            if polled_gpus >= 12 and tokens > 0 and deltas.values("endpoint").distinct().count() >= 3:
                break
            assert all(p.poll() is None for p in processes), "a demo process exited"
            time.sleep(1)
        # then: every simulated GPU was polled on its node queue and ingested; every endpoint's tokens metered
        assert samples.values("gpu").distinct().count() >= 12, "no live readings of every simulated GPU in time"
        assert deltas.values("endpoint").distinct().count() >= 3, "not every simulated endpoint was metered in time"
        assert (deltas.aggregate(g=Sum("generation_tokens"))["g"] or 0) > 0
        assert not samples.filter(power_w__isnull=True).exists()
    finally:
        for process in processes:
            _stop(process)
