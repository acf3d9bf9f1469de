"""GPU telemetry tasks: thin wrappers over telemetry.gpu_services / rollups / retention.

Queues: polls go to `node.<hostname>` (NVML on the node) or `scrape` (dcgm-exporter), reports to `ingest`,
rollups, staleness and retention to `rollup` (see telemetry/schedule_gpu.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from celery import shared_task
from celery.signals import worker_process_init
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone
from kombu.exceptions import ContentDisallowed, SerializationError

from telemetry import gpu_services, retention, rollups
from telemetry.clock import broker_clock_reset
from telemetry.collectors.nvml import reset_reader
from telemetry.gpu_services import INGEST_QUEUE, QueuedReport

logger = logging.getLogger(__name__)

__all__ = [
    "gpu_dcgm_poll_task", "gpu_node_poll_task", "gpu_nodes_mark_stale_task", "gpu_polls_schedule_task",
    "gpu_report_ingest_task", "gpu_rollups_run_task", "gpu_sample_partitions_ensure_ahead_task",
    "gpu_sample_retention_apply_task", "gpu_util_rollup_retention_apply_task",
]


# A database restart (or failover) fails the tasks that were writing or connecting at that moment; they are retried
# with backoff instead of being acknowledged as failed, so a report is stored late rather than lost. Safe because
# every write is idempotent (unique keys, ON CONFLICT DO NOTHING). Measured: tests/reliability/test_postgres_restart.py.
DATABASE_RETRY = {"autoretry_for": (OperationalError, InterfaceError), "retry_backoff": 1, "retry_backoff_max": 30,
                  "retry_jitter": True, "max_retries": 10}


@worker_process_init.connect
def _nvml_per_process(**kwargs) -> None:
    # A prefork child must not inherit the parent's NVML session: each child initialises its own, lazily.
    reset_reader()
    _drain_local.__dict__.clear()  # nor the parent's broker connections
    broker_clock_reset()


@shared_task(soft_time_limit=20, time_limit=30, acks_late=False)
def gpu_node_poll_task(node_id: int, hostname: str, simulated: bool = False, ordered_at: str | None = None,
                       window_s: float | None = None) -> dict:
    # acks_late off: a poll lost in a crash is simply superseded by the next one (counters are cumulative).
    return gpu_services.gpu_node_poll(node_id=node_id, hostname=hostname, simulated=simulated, ordered_at=ordered_at,
                                      window_s=window_s)


@shared_task(soft_time_limit=20, time_limit=30, acks_late=False)
def gpu_dcgm_poll_task(node_id: int) -> dict:
    return gpu_services.gpu_dcgm_poll(node_id=node_id)


@shared_task(bind=True, soft_time_limit=60, time_limit=90, **DATABASE_RETRY)
def gpu_report_ingest_task(self, node_id: int, payload: dict, ordered_at: str | None = None,
                           window_s: float | None = None) -> dict:
    """One node report (what node workers and the dcgm poll send), plus whatever reports are waiting behind
    it in the `ingest` queue, up to GPU_INGEST_BATCH_MAX: one transaction and one COPY for all of them.
    Idle, a batch is this report alone; under load, batches grow and the queue drains."""
    drained = [] if self.request.is_eager else _ingest_queue_drain(self, limit=_batch_max() - 1)
    own = QueuedReport(node_id=node_id, payload=payload, ordered_at=ordered_at, window_s=window_s)
    reports = [own, *(report for _, report in drained)]
    try:
        result = gpu_services.gpu_reports_ingest_safely(reports=reports)
    except BaseException:
        for message, _ in drained:  # back to the queue for another try (acks_late, like this task's own)
            _settle(message, ack=False)
        raise
    # Committed: only now are the drained messages acknowledged (a crash before this redelivers them).
    for message, _ in drained:
        _settle(message, ack=True)
    return result


_drain_local = threading.local()  # per process (cleared after the fork) and per thread of a threads pool


def _batch_max() -> int:
    return max(1, settings.GPU_INGEST_BATCH_MAX)


def _ingest_queue_drain(task, *, limit: int) -> list[tuple[Any, QueuedReport]]:
    """Up to `limit` more `gpu_report_ingest_task` messages from the ingest queue, unacknowledged. Stops at
    the first other message (put back) or an empty queue; an expired message is acknowledged and dropped,
    as the worker would. Broker trouble ends the draining, never the batch."""
    taken: list[tuple[Any, QueuedReport]] = []
    if limit <= 0:
        return taken
    try:
        connection = getattr(_drain_local, "connection", None)
        if connection is None:
            connection = _drain_local.connection = task.app.connection_for_read()
        queue = task.app.amqp.queues[INGEST_QUEUE](connection.default_channel)
        now = dt.datetime.now(dt.UTC)
        while len(taken) < limit:
            message = queue.get(no_ack=False, accept=task.app.conf.accept_content)
            if message is None:
                break
            headers = message.headers or {}
            if headers.get("task") != task.name or headers.get("eta"):
                _settle(message, ack=False)  # not ours to run now: back where it was
                break
            try:
                expired = bool(headers.get("expires")) and dt.datetime.fromisoformat(headers["expires"]) <= now
                args, kwargs, _embed = message.decode()
                node_id, payload = (list(args) + [kwargs.get("node_id"), kwargs.get("payload")][len(args):])[:2]
                clock = {"ordered_at": kwargs.get("ordered_at"), "window_s": kwargs.get("window_s")}
            except (TypeError, ValueError, SerializationError, ContentDisallowed) as exc:
                # Undecodable: redelivering it would fail the same way forever.
                logger.warning("dropping an undecodable ingest message: %s", exc)
                _settle(message, ack=True)
                continue
            if expired:
                _settle(message, ack=True)
                continue
            taken.append((message, QueuedReport(node_id=node_id, payload=payload, **clock)))
    except Exception:  # noqa: BLE001 - the reports taken so far are still worth storing
        logger.warning("draining the ingest queue failed; going on with %d reports", len(taken) + 1, exc_info=True)
        _drain_local.__dict__.clear()
    return taken


def _settle(message, *, ack: bool) -> None:
    try:
        message.ack() if ack else message.requeue()
    except Exception:  # noqa: BLE001 - unacknowledged, the broker redelivers it later; storing it twice is safe
        logger.warning("could not %s a drained ingest message", "ack" if ack else "requeue", exc_info=True)
        _drain_local.__dict__.clear()


@shared_task(soft_time_limit=20, time_limit=30)
def gpu_polls_schedule_task() -> int:
    return len(gpu_services.gpu_polls_schedule(now=timezone.now()))


@shared_task(soft_time_limit=20, time_limit=30)
def gpu_nodes_mark_stale_task() -> int:
    return gpu_services.gpu_nodes_mark_stale(now=timezone.now())


@shared_task(soft_time_limit=240, time_limit=300)
def gpu_rollups_run_task() -> dict:
    result = rollups.gpu_rollups_run(now=timezone.now())
    return {key: str(value) for key, value in result.items()}


@shared_task(soft_time_limit=60, time_limit=90)
def gpu_sample_partitions_ensure_ahead_task() -> list[str]:
    return retention.gpu_sample_partitions_ensure_ahead(today=timezone.now().date())


@shared_task(soft_time_limit=240, time_limit=300)
def gpu_sample_retention_apply_task() -> dict:
    return retention.gpu_sample_retention_apply(now=timezone.now())


@shared_task(soft_time_limit=240, time_limit=300)
def gpu_util_rollup_retention_apply_task() -> dict:
    return retention.gpu_util_rollup_retention_apply()
