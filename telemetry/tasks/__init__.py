"""Celery tasks of telemetry; Celery's autodiscovery imports this module."""

from telemetry.tasks.dashboards import *  # noqa: F403
from telemetry.tasks.gpu import *  # noqa: F403
from telemetry.tasks.metering import *  # noqa: F403
