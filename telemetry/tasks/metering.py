"""Metering tasks: thin wrappers that load ids and call telemetry.metering_services.

Queues come from CELERY_TASK_ROUTES in settings (scrape tasks on `scrape`, rollup and retention on `rollup`),
so `.delay()` routes them too; beat options repeat them.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from telemetry import metering_services
from telemetry.tasks.gpu import DATABASE_RETRY

__all__ = [
    "counter_snapshots_prune_task", "endpoints_scrape_schedule_task", "endpoints_scrape_task", "usage_rollup_task",
]

# A batch fetches concurrently with a per-request deadline, so its wall time is about one timeout plus the
# database write; the limits leave room for that and stop a stuck batch before the next round piles up.
_SCRAPE_SOFT_LIMIT_S = max(30, int(settings.SCRAPE_TIMEOUT_S * 4) + 20)


@shared_task(name="telemetry.endpoints_scrape_schedule_task", soft_time_limit=30, time_limit=60)
def endpoints_scrape_schedule_task() -> int:
    return metering_services.endpoints_scrape_schedule()


@shared_task(name="telemetry.endpoints_scrape_task",
             soft_time_limit=_SCRAPE_SOFT_LIMIT_S, time_limit=_SCRAPE_SOFT_LIMIT_S + 30, **DATABASE_RETRY)
def endpoints_scrape_task(endpoint_ids: list[int]) -> dict:
    summary = metering_services.endpoints_scrape(endpoint_ids=endpoint_ids)
    return {"endpoints": summary.endpoints, "healthy": summary.healthy, "snapshots": summary.snapshots,
            "deltas": summary.deltas, "skipped": summary.skipped}


@shared_task(name="telemetry.usage_rollup_task", soft_time_limit=240, time_limit=300)
def usage_rollup_task() -> int:
    return metering_services.usage_rollup()


@shared_task(name="telemetry.counter_snapshots_prune_task", soft_time_limit=240, time_limit=300)
def counter_snapshots_prune_task() -> dict[str, int]:
    return metering_services.counter_snapshots_prune()

