"""Dashboard cache pre-warm (rollup queue, on beat every `HEATMAP_WARM_S`): thin, the work is in gpu_selectors."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from telemetry import gpu_selectors

__all__ = ["site_heatmaps_warm_task"]


@shared_task(soft_time_limit=50, time_limit=60)
def site_heatmaps_warm_task() -> dict:
    # With the default per-process cache a worker would fill only its own memory, which no web process reads:
    # skip rather than spend database time on nothing (set CACHES to Redis/Memcached to use it).
    if not gpu_selectors.dashboard_cache_shared():
        return {"warmed": 0, "skipped": "the cache is per process"}
    from telemetry.schedule_gpu import HEATMAP_WARM_S

    return {"warmed": gpu_selectors.site_heatmaps_warm(now=timezone.now(), ahead=dt.timedelta(seconds=HEATMAP_WARM_S))}
