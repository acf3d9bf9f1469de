"""Telemetry models: GPU samples and rollups (gpu.py), engine scrapes and usage (metering.py)."""

from telemetry.models.gpu import *  # noqa: F403
from telemetry.models.metering import *  # noqa: F403
