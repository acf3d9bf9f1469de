"""The Celery app. Queues follow DESIGN.md: node.<hostname> (on GPU nodes), scrape, ingest, rollup."""

from __future__ import annotations

import importlib
import os

from celery import Celery
from kombu import Exchange, Queue

from factory_portal.broker import install as install_atomic_filesystem_broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "factory_portal.settings")

install_atomic_filesystem_broker()  # before the app connects: see factory_portal/broker.py
app = Celery("factory_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")

CENTRAL_QUEUES = ("default", "scrape", "ingest", "rollup")
app.conf.task_queues = [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in CENTRAL_QUEUES]
app.conf.task_create_missing_queues = True  # node.<hostname> queues are created on demand

# Each app lists its periodic tasks in <app>/schedule.py as BEAT_SCHEDULE.
SCHEDULE_MODULES = ("telemetry.schedule", "tenants.schedule")


def node_queue(hostname: str) -> str:
    """The queue a GPU node's worker consumes (`celery worker -Q node.<hostname>`)."""
    return f"node.{hostname}"


def collect_beat_schedule() -> dict:
    schedule: dict = {}
    for module_name in SCHEDULE_MODULES:
        schedule.update(getattr(importlib.import_module(module_name), "BEAT_SCHEDULE", {}))
    return schedule


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **kwargs) -> None:
    sender.conf.beat_schedule = collect_beat_schedule()


app.autodiscover_tasks()
