"""A real Celery worker (subprocess, filesystem broker in a tmp dir) runs the metering tasks against the test
database: the scheduler fans out, the batch task scrapes a loopback endpoint, the rollup rolls the deltas up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from kombu import Connection

from factory_portal.celery import app
from sites.choices import EndpointHealth
from telemetry.models.metering import CounterSnapshot, UsageDelta, UsageRollup
from tests import factories
from tests.telemetry.metering_server import EngineServer, vllm_page

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60


@pytest.mark.parametrize("task, queue", [
    ("telemetry.endpoints_scrape_schedule_task", "scrape"), ("telemetry.endpoints_scrape_task", "scrape"),
    ("telemetry.usage_rollup_task", "rollup"), ("telemetry.counter_snapshots_prune_task", "rollup"),
])
def test_metering_tasks_are_routed_by_name(task: str, queue: str) -> None:
    # given / when: no queue option, as `.delay()` sends it
    route = app.amqp.router.route({}, task, (), {})
    # then
    assert route["queue"].name == queue


def _wait_for(predicate, worker: subprocess.Popen, log: Path, what: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        if predicate():
            return
        if worker.poll() is not None:
            pytest.fail(f"the worker exited ({worker.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    pytest.fail(f"no {what} within {DEADLINE_S} s; worker log:\n{log.read_text()[-3000:]}")


@pytest.mark.django_db(transaction=True)
@pytest.mark.filterwarnings("ignore:task_always_eager has no effect on send_task")
def test_real_worker_scrapes_a_loopback_endpoint_and_rolls_usage_up(tmp_path: Path) -> None:
    # given a loopback engine, its endpoint committed to the test database, and a filesystem broker in tmp_path
    broker = tmp_path / "var" / "broker"
    folders = {name: broker / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    transport_options = {"data_folder_in": str(folders["queue"]), "data_folder_out": str(folders["queue"]),
                         "processed_folder": str(folders["processed"]), "control_folder": str(folders["control"])}
    db = connection.settings_dict
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "factory_portal.settings", "VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": "filesystem://", "CELERY_TASK_ALWAYS_EAGER": "0", "SCRAPE_ALLOW_LOOPBACK": "1",
        "SECRET_KEY": settings.SECRET_KEY, "SECRETS_ENCRYPTION_KEY": settings.SECRETS_ENCRYPTION_KEY,
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "worker.log"
    with EngineServer() as server:
        server.set("/w", vllm_page(engines={"0": (100, 200), "1": (10, 20)}))
        endpoint = factories.ServingEndpointFactory(metrics_url=server.url("/w"), engine="auto")
        with log.open("w") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "factory_portal", "worker", "-Q", "scrape,rollup,default",
                 "--pool", "solo", "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "INFO"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            deadline = time.monotonic() + DEADLINE_S
            with Connection("filesystem://", transport_options=transport_options) as broker_connection:

                def send(name: str) -> None:
                    # No queue given: CELERY_TASK_ROUTES decides, as for `.delay()`.
                    app.send_task(name, connection=broker_connection)

                # when the scheduler task is enqueued, twice (the second poll gives the first deltas)
                send("telemetry.endpoints_scrape_schedule_task")
                _wait_for(lambda: CounterSnapshot.objects.filter(series__endpoint=endpoint).count() == 2,
                          worker, log, "snapshots", deadline)
                server.set("/w", vllm_page(engines={"0": (130, 260), "1": (11, 29)}))
                time.sleep(0.05)  # the next scrape must be at a later instant than the first
                send("telemetry.endpoints_scrape_schedule_task")
                _wait_for(lambda: UsageDelta.objects.filter(endpoint=endpoint).count() == 2,
                          worker, log, "usage deltas", deadline)
                send("telemetry.usage_rollup_task")
                _wait_for(lambda: UsageRollup.objects.filter(endpoint=endpoint, bucket="day").count() == 2,
                          worker, log, "daily rollups", deadline)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait(timeout=5)

    # then: the worker wrote per-engine snapshots and deltas, and the rollups sum them exactly
    endpoint.refresh_from_db()
    assert endpoint.health == EndpointHealth.HEALTHY and endpoint.detected_engine == "vllm"
    daily = UsageRollup.objects.filter(endpoint=endpoint, bucket="day")
    assert sorted(daily.values_list("prompt_tokens", "generation_tokens")) == [(1, 9), (30, 60)]
