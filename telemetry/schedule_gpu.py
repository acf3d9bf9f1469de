"""Periodic gpu tasks."""

BEAT_SCHEDULE: dict = {}
