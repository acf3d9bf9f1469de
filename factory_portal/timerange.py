"""The time range of a dashboard, read from the query string (`?range=24h`, or custom `start`/`end`)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from django.utils import timezone

from factory_portal.exceptions import ServiceError

PRESETS: dict[str, tuple[str, dt.timedelta]] = {
    "1h": ("Last hour", dt.timedelta(hours=1)),
    "24h": ("Last 24 hours", dt.timedelta(hours=24)),
    "7d": ("Last 7 days", dt.timedelta(days=7)),
    "30d": ("Last 30 days", dt.timedelta(days=30)),
}
DEFAULT_RANGE = "24h"
CUSTOM = "custom"
MAX_CUSTOM_SPAN = dt.timedelta(days=400)
CHOICES = [*((key, label) for key, (label, _) in PRESETS.items()), (CUSTOM, "Custom")]


@dataclass(frozen=True)
class TimeRange:
    key: str
    start: dt.datetime  # aware, UTC
    end: dt.datetime  # aware, UTC
    # The custom bounds as typed (site-local wall clock), to refill the form.
    start_text: str = ""
    end_text: str = ""

    @property
    def label(self) -> str:
        return PRESETS[self.key][0] if self.key in PRESETS else "Custom range"

    def query(self) -> str:
        params = {"range": self.key}
        if self.key == CUSTOM:
            params |= {"start": self.start_text, "end": self.end_text}
        return urlencode(params)

    def as_json(self) -> dict:
        return {"key": self.key, "label": self.label, "start": self.start.isoformat(), "end": self.end.isoformat()}


def _parse_local(text: str, tz: zoneinfo.ZoneInfo, what: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ServiceError(f"The {what} must be a date and time like 2026-01-31T14:00.", field="range") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(dt.UTC)


def parse_time_range(params: Mapping[str, str], *, time_zone: str = "UTC", now: dt.datetime | None = None) -> (
        TimeRange):
    """The range the query string asks for; a ServiceError with a message for anything malformed.

    Custom bounds without an offset are read as wall-clock time in `time_zone` (the site's).
    """
    now = now or timezone.now()
    key = (params.get("range") or DEFAULT_RANGE).strip()
    if key in PRESETS:
        return TimeRange(key=key, start=now - PRESETS[key][1], end=now)
    if key != CUSTOM:
        raise ServiceError(f"Unknown range {key[:20]!r}: use 1h, 24h, 7d, 30d or custom.", field="range")
    tz = zoneinfo.ZoneInfo(time_zone)
    start_text, end_text = (params.get("start") or "").strip(), (params.get("end") or "").strip()
    if not start_text or not end_text:
        raise ServiceError("A custom range needs a start and an end.", field="range")
    start = _parse_local(start_text, tz, "start")
    end = _parse_local(end_text, tz, "end")
    if end <= start:
        raise ServiceError("The end of the range must be after its start.", field="range")
    if end - start > MAX_CUSTOM_SPAN:
        raise ServiceError(f"A custom range can span at most {MAX_CUSTOM_SPAN.days} days.", field="range")
    return TimeRange(key=CUSTOM, start=start, end=end, start_text=start_text, end_text=end_text)
