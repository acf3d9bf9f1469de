"""Periodic tasks of telemetry, merged into Celery beat by factory_portal.celery."""

from telemetry.schedule_gpu import BEAT_SCHEDULE as GPU_SCHEDULE
from telemetry.schedule_metering import BEAT_SCHEDULE as METERING_SCHEDULE

BEAT_SCHEDULE: dict = {**GPU_SCHEDULE, **METERING_SCHEDULE}
