"""The portal's Celery app with a short Redis visibility timeout, for workers started by the reliability tests.

Production keeps kombu's default (1 h): a message whose worker died unacknowledged is redelivered after that.
The tests cannot wait an hour, so they start workers with `-A tests.reliability.celery_app`.
"""

from factory_portal.celery import app

# Sweep for abandoned messages every second (kombu's default: a scan every 10 × 10 s).
app.conf.broker_transport_options = {"visibility_timeout": 5, "unacked_restore_interval": 1,
                                     "unacked_restore_throttle": 1}

__all__ = ["app"]
