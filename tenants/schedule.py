"""Periodic tasks of this app, merged into Celery beat by factory_portal.celery."""

BEAT_SCHEDULE: dict = {}
