"""GPU telemetry tasks: thin wrappers over telemetry.gpu_services / rollups / retention.

Queues: polls go to `node.<hostname>` (NVML on the node) or `scrape` (dcgm-exporter), reports to `ingest`,
rollups, staleness and retention to `rollup` (see telemetry/schedule_gpu.py).
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_init
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from telemetry import gpu_services, retention, rollups
from telemetry.collectors.nvml import reset_reader

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


@shared_task(soft_time_limit=20, time_limit=30, acks_late=False)
def gpu_node_poll_task(node_id: int, hostname: str, simulated: bool = False, ordered_at: str | None = None,
                       window_s: float | None = None) -> dict:
    # acks_late off: a poll lost in a crash is simply superseded by the next one (counters are cumulative).
    return gpu_services.gpu_node_poll(node_id=node_id, hostname=hostname, simulated=simulated, ordered_at=ordered_at,
                                      window_s=window_s)


@shared_task(soft_time_limit=20, time_limit=30, acks_late=False)
def gpu_dcgm_poll_task(node_id: int) -> dict:
    return gpu_services.gpu_dcgm_poll(node_id=node_id)


@shared_task(soft_time_limit=60, time_limit=90, **DATABASE_RETRY)
def gpu_report_ingest_task(node_id: int, payload: dict, ordered_at: str | None = None,
                           window_s: float | None = None) -> dict:
    return gpu_services.gpu_report_ingest_safely(node_id=node_id, payload=payload, ordered_at=ordered_at,
                                                 window_s=window_s)


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
