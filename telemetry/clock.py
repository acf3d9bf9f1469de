"""Node clocks: the server is the clock of record.

A node stamps its readings with its own clock. When that clock is off by more than a tolerance, the readings are
re-timed by the measured offset before they are stored, so energy lands in the right rollup minutes and nothing is
stored in the future or refused. The rule (`report_clock_correct`) is pure; each path supplies what it knows about
*when* the node's stamp was taken on the server's clock (docs/telemetry.md, "Clock skew"):

- push API with `sent_at` (the agent stamps it as it sends): taken just before receipt, so
  offset = sent_at − received_at. Reports an agent kept through an outage are older than their receipt, but their
  `sent_at` is not, so buffering is never mistaken for skew.
- push API without `sent_at` (older agents): the reading was taken at or before receipt, but how long before is
  unknown (buffered reports), so only a clock that is *ahead* can be measured.
- queue (NVML worker): the scheduler stamps `ordered_at` into the poll's kwargs when it sends it; the node reads
  after that and before ordered_at + window_s (and before the ingest runs): the node's worker drops a poll whose
  window has passed, judged by the *broker's* clock (`central_now`), never its own. Queue lag moves the reading
  inside that window, so it is never mistaken for skew; ingest lag plays no part.
- queue without `ordered_at` (dcgm-exporter polls read centrally, messages from before this change): like a push
  without `sent_at`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from dataclasses import replace
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from sites.models import Node
from telemetry.collectors.nvml import NodeReading, reading_from_dict

logger = logging.getLogger(__name__)

# Offsets that differ by less than this from the recorded one are not written again (one UPDATE saved per report).
RECORD_CHANGE_S = 0.5


def report_clock_correct(*, report: NodeReading, reference: dt.datetime, tolerance_s: float,
                         observed: dt.datetime | None = None, lag_before_s: float = 0.0, lag_after_s: float = 0.0,
                         previous_offset_s: float | None = None) -> tuple[NodeReading, float]:
    """The report with every timestamp shifted by the node's clock offset when that offset exceeds the tolerance,
    and the offset (seconds, positive = the node's clock is ahead).

    `observed` is a stamp of the node's clock (default: the report's `ts`) taken, on the server's clock, at some
    instant in [reference − lag_before_s, reference + lag_after_s] (`math.inf`: unbounded). A stamp inside that
    window is explained by delay: nothing is shifted and the offset is 0 (or, within the tolerance outside it, the
    part the window cannot explain). Beyond the tolerance the offset is `observed − reference` (the stamp is
    assumed taken at the reference instant, the usual case: an idle queue, a push that arrives at once), unless it
    is within the tolerance of `previous_offset_s`, which is then kept: a retried push re-times its readings to
    the same instants (idempotent), and jitter does not rewrite the node's row.
    """
    delta = (observed or report.ts) - reference
    d = delta.total_seconds()
    if d > lag_after_s:
        excess = d - lag_after_s
    elif d < -lag_before_s:
        excess = d + lag_before_s
    else:
        excess = 0.0
    if abs(excess) <= tolerance_s:
        return report, excess
    offset = d
    if previous_offset_s is not None and abs(offset - previous_offset_s) <= tolerance_s:
        offset = previous_offset_s
    return report_shift(report, offset_s=offset), offset


def report_shift(report: NodeReading, *, offset_s: float) -> NodeReading:
    """The same report with its cycle's and every reading's `ts` moved back by `offset_s` seconds."""
    shift = dt.timedelta(seconds=offset_s)
    return replace(report, ts=report.ts - shift, gpus=tuple(replace(g, ts=g.ts - shift) for g in report.gpus))


def tolerance_s() -> float:
    return float(settings.NODE_CLOCK_SKEW_TOLERANCE_S)


def poll_order_clock(*, window_s: float) -> dict:
    """The central timestamp a poll order carries (task kwargs): when it was sent, and how long it stays valid."""
    return {"ordered_at": timezone.now().isoformat(), "window_s": window_s}


def poll_order_age_s(*, ordered_at: str, now: dt.datetime) -> float:
    """Seconds since the poll was ordered, by `now` (a central clock)."""
    return (now - dt.datetime.fromisoformat(ordered_at)).total_seconds()


_broker_clock = threading.local()  # per process (cleared after the fork by `broker_clock_reset`) and per thread
BROKER_CLOCK_TIMEOUT_S = 2.0


def central_now() -> dt.datetime:
    """Now on a central clock, as a GPU node's worker can read it without trusting its own: the broker's clock
    (Redis `TIME`, one round trip) when the broker is Redis. Any other broker (the embedded filesystem one of a
    single machine, RabbitMQ), or Redis not answering, gives this machine's clock, as Celery's `expires` did."""
    client = _broker_clock_client()
    if client is not None:
        try:
            seconds, micros = client.time()
            return dt.datetime.fromtimestamp(seconds + micros / 1e6, tz=dt.UTC)
        except Exception:  # noqa: BLE001 - the poll goes on with the local clock; the next one reconnects
            logger.warning("could not read the broker's clock; judging the poll by this node's clock", exc_info=True)
            broker_clock_reset()
    return timezone.now()


def broker_clock_reset() -> None:
    """Forget this process's broker connection (after a fork, or after an error)."""
    _broker_clock.__dict__.clear()


def _broker_clock_client():
    if "client" not in _broker_clock.__dict__:
        url = settings.CELERY_BROKER_URL
        client = None
        if urlsplit(url).scheme in ("redis", "rediss"):
            import redis

            client = redis.Redis.from_url(url, socket_timeout=BROKER_CLOCK_TIMEOUT_S,
                                          socket_connect_timeout=BROKER_CLOCK_TIMEOUT_S)
        _broker_clock.client = client
    return _broker_clock.client


def node_report_from_push(*, node_id: int, data: dict, received_at: dt.datetime) -> NodeReading:
    """A pushed report (validated data, `sent_at` optional) as a NodeReading on the server's clock; records the
    node's measured offset."""
    report = reading_from_dict(data)
    previous = _recorded_offset(node_id)
    sent_at = data.get("sent_at")
    if sent_at is not None:
        corrected, offset = report_clock_correct(report=report, reference=received_at, observed=sent_at,
                                                 tolerance_s=tolerance_s(), previous_offset_s=previous)
    else:
        corrected, offset = report_clock_correct(report=report, reference=received_at, lag_before_s=math.inf,
                                                 tolerance_s=tolerance_s(), previous_offset_s=previous)
    node_clock_offset_record(node_id=node_id, offset_s=offset, previous_offset_s=previous)
    return corrected


def node_report_from_queue(*, node_id: int, payload: dict, ordered_at: str | None = None,
                           window_s: float | None = None, received_at: dt.datetime | None = None,
                           offsets: dict[int, float | None] | None = None) -> NodeReading:
    """A queued report (the poll's `ordered_at`/`window_s` when it came from a scheduled NVML poll) as a
    NodeReading on the server's clock; records the node's measured offset when the poll order gave a reference.
    `offsets`: the nodes' recorded offsets, read once for a whole ingest batch and kept current here."""
    report = reading_from_dict(payload)
    received_at = received_at or timezone.now()
    if not ordered_at:
        corrected, _ = report_clock_correct(report=report, reference=received_at, lag_before_s=math.inf,
                                            tolerance_s=tolerance_s())
        return corrected
    ordered = dt.datetime.fromisoformat(ordered_at)
    # The read happened after the order and before both its expiry and this ingest.
    latest_s = max(0.0, min(float(window_s or 0), (received_at - ordered).total_seconds()))
    previous = offsets.get(node_id) if offsets is not None else _recorded_offset(node_id)
    corrected, offset = report_clock_correct(report=report, reference=ordered, lag_after_s=latest_s,
                                             tolerance_s=tolerance_s(), previous_offset_s=previous)
    if node_clock_offset_record(node_id=node_id, offset_s=offset, previous_offset_s=previous) and offsets is not None:
        offsets[node_id] = round(offset, 3)
    return corrected


def node_clock_offset_record(*, node_id: int, offset_s: float, previous_offset_s: float | None) -> bool:
    """Store the node's last measured clock offset (shown on the node row and the API; the dashboard alerts above
    the tolerance). Skipped when it has not really changed, so a steady node costs no write. True when written."""
    if previous_offset_s is not None and abs(offset_s - previous_offset_s) < RECORD_CHANGE_S:
        return False
    Node.objects.filter(pk=node_id).update(clock_offset_s=round(offset_s, 3), updated_at=timezone.now())
    return True


def _recorded_offset(node_id: int) -> float | None:
    return Node.objects.filter(pk=node_id).values_list("clock_offset_s", flat=True).first()
