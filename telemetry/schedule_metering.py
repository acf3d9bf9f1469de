"""Periodic metering tasks."""

BEAT_SCHEDULE: dict = {}
