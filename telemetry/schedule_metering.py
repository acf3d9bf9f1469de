"""Periodic metering tasks: the scrape fan-out every ENGINE_SCRAPE_INTERVAL_S, usage rollups every minute,
snapshot retention every hour (it also makes the next days' snapshot partitions, so they exist ahead)."""

from django.conf import settings

_INTERVAL_S = settings.ENGINE_SCRAPE_INTERVAL_S

BEAT_SCHEDULE: dict = {
    "metering-scrape-endpoints": {
        "task": "telemetry.endpoints_scrape_schedule_task",
        "schedule": float(_INTERVAL_S),
        # A backlog of fan-outs is dropped, not replayed: counters are cumulative, the next poll catches up.
        "options": {"queue": "scrape", "expires": float(_INTERVAL_S)},
    },
    "metering-usage-rollup": {
        "task": "telemetry.usage_rollup_task",
        "schedule": 60.0,
        "options": {"queue": "rollup", "expires": 60.0},
    },
    "metering-counter-snapshots-prune": {
        "task": "telemetry.counter_snapshots_prune_task",
        "schedule": 3600.0,
        "options": {"queue": "rollup", "expires": 3600.0},
    },
}
