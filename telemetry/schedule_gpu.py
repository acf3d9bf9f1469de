"""Periodic GPU tasks (merged into Celery beat by factory_portal.celery).

The poll scheduler ticks every GPU_POLL_TICK_S seconds and enqueues each site's polls when its own
interval (`Site.gpu_poll_interval_s`, default 10 s) is due, so the tick bounds the jitter, not the rate.
"""

from factory_portal.env import envint

GPU_POLL_TICK_S = envint("GPU_POLL_TICK_S", 5)
# The dashboards' heatmap pre-warm: within `gpu_selectors.WARM_AHEAD` (60 s), so the next run is never late.
HEATMAP_WARM_S = envint("HEATMAP_WARM_S", 60)

BEAT_SCHEDULE: dict = {
    "gpu-polls-schedule": {
        "task": "telemetry.tasks.gpu.gpu_polls_schedule_task",
        "schedule": float(GPU_POLL_TICK_S),
        "options": {"queue": "default", "expires": GPU_POLL_TICK_S},
    },
    "gpu-nodes-mark-stale": {
        "task": "telemetry.tasks.gpu.gpu_nodes_mark_stale_task",
        "schedule": 10.0,
        "options": {"queue": "rollup", "expires": 10},
    },
    "gpu-rollups-run": {
        "task": "telemetry.tasks.gpu.gpu_rollups_run_task",
        "schedule": 30.0,
        "options": {"queue": "rollup", "expires": 30},
    },
    "gpu-sample-partitions-ensure": {
        "task": "telemetry.tasks.gpu.gpu_sample_partitions_ensure_ahead_task",
        "schedule": 3600.0,
        "options": {"queue": "rollup"},
    },
    "gpu-sample-retention": {
        "task": "telemetry.tasks.gpu.gpu_sample_retention_apply_task",
        "schedule": 3600.0,
        "options": {"queue": "rollup"},
    },
    "site-heatmaps-warm": {
        "task": "telemetry.tasks.dashboards.site_heatmaps_warm_task",
        "schedule": float(HEATMAP_WARM_S),
        "options": {"queue": "rollup", "expires": HEATMAP_WARM_S},
    },
}
