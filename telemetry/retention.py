"""Raw GPU sample partitions and retention (DESIGN.md §4).

PostgreSQL: `telemetry_gpusample` is partitioned by UTC day; partitions are named
`telemetry_gpusample_pYYYYMMDD`, created ahead by a task (and on demand by the ingest path), and
retention drops the whole partitions that end before the cutoff. SQLite: one plain table and a DELETE.
Every function here is idempotent: running it twice changes nothing the second time.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterable

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from telemetry.models import GpuRollup1m, GpuSample

PARENT = "telemetry_gpusample"
PARTITION_RE = re.compile(rf"^{PARENT}_p(\d{{8}})$")
DEFAULT_DAYS_AHEAD = 3
PARTITION_LOCK_ID = 0x6670_7061_7274  # "fppart": serializes partition creation across workers
# 1-minute rollups are kept this long; 1-hour and per-site rollups are kept for good.
ROLLUP_1M_RETENTION_DAYS_DEFAULT = 90

_known_partitions: set[dt.date] = set()
_known_lock = threading.Lock()


def raw_retention_days() -> int:
    return int(getattr(settings, "RAW_SAMPLE_RETENTION_DAYS", 7))


def rollup_1m_retention_days() -> int:
    return int(getattr(settings, "GPU_ROLLUP_1M_RETENTION_DAYS", ROLLUP_1M_RETENTION_DAYS_DEFAULT))


def is_partitioned() -> bool:
    return connection.vendor == "postgresql"


def partition_name(day: dt.date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def existing_partitions() -> dict[dt.date, str]:
    """day → partition table name, read from the catalog."""
    if not is_partitioned():
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
            [PARENT],
        )
        names = [row[0] for row in cursor.fetchall()]
    out: dict[dt.date, str] = {}
    for name in names:
        match = PARTITION_RE.match(name)
        if match:
            out[dt.datetime.strptime(match.group(1), "%Y%m%d").date()] = name  # noqa: DTZ007 - a date, no time
    return out


def gpu_sample_partitions_ensure(*, days: Iterable[dt.date]) -> list[str]:
    """Create the day partitions that are missing; returns the names created."""
    if not is_partitioned():
        return []
    wanted = set(days)
    with _known_lock:
        missing = wanted - _known_partitions
    if not missing:
        return []
    created: list[str] = []
    with connection.cursor() as cursor:
        # Two ingest workers may create the same day at once: CREATE ... IF NOT EXISTS does not make the loser
        # wait for the winner's uncommitted table (it fails with "already exists"), so creation is serialized.
        # Inside a transaction the lock is held until commit, when the new table is visible to the next one.
        if connection.in_atomic_block:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITION_LOCK_ID])
        else:
            cursor.execute("SELECT pg_advisory_lock(%s)", [PARTITION_LOCK_ID])
        try:
            present = existing_partitions()
            created = _create_partitions(cursor, sorted(missing - set(present)))
        finally:
            if not connection.in_atomic_block:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [PARTITION_LOCK_ID])
    if connection.in_atomic_block:
        # A rollback would undo the CREATE: remember the days only once the transaction is committed.
        transaction.on_commit(lambda: _remember(wanted))
    else:
        _remember(wanted)
    return created


def _create_partitions(cursor, days: list[dt.date]) -> list[str]:
    for day in days:
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        cursor.execute(
            f'CREATE TABLE IF NOT EXISTS "{partition_name(day)}" PARTITION OF {PARENT} FOR VALUES FROM (%s) TO (%s)',
            [start, start + dt.timedelta(days=1)],
        )
    return [partition_name(day) for day in days]


def _remember(days: set[dt.date]) -> None:
    with _known_lock:
        _known_partitions.update(days)


def forget_known_partitions() -> None:
    """Drop the in-process cache (after retention dropped partitions, and in tests)."""
    with _known_lock:
        _known_partitions.clear()


def gpu_sample_partitions_ensure_ahead(*, today: dt.date, days_ahead: int = DEFAULT_DAYS_AHEAD) -> list[str]:
    return gpu_sample_partitions_ensure(days=[today + dt.timedelta(days=n) for n in range(-1, days_ahead + 1)])


def raw_cutoff(*, now: dt.datetime) -> dt.datetime:
    """Samples before this instant are past retention (and refused by the ingest path)."""
    return now - dt.timedelta(days=raw_retention_days())


def gpu_sample_retention_apply(*, now: dt.datetime) -> dict[str, int]:
    """Drop raw samples older than the retention period: whole day partitions on PostgreSQL
    (a day is dropped once all of it is past the cutoff), a DELETE on SQLite; and 1-minute rollups
    older than theirs."""
    result = {"partitions_dropped": 0, "rows_deleted": 0}
    if is_partitioned():
        result["partitions_dropped"] = gpu_sample_partitions_drop_expired(now=now)
    else:
        result["rows_deleted"], _ = GpuSample.objects.filter(ts__lt=raw_cutoff(now=now)).delete()
    rollup_cutoff = now - dt.timedelta(days=rollup_1m_retention_days())
    result["rollups_1m_deleted"], _ = GpuRollup1m.objects.filter(bucket__lt=rollup_cutoff).delete()
    return result


def gpu_sample_partitions_drop_expired(*, now: dt.datetime) -> int:
    """Detach, then drop, each day partition wholly past the cutoff; returns how many days were removed.

    Why two steps: dropping a partition locks the parent table until the end of the transaction, and most of
    a drop's time is the filesystem releasing the files at commit (≈ 0.2 ms per MiB measured here: tens of
    milliseconds for a day of 100 GPUs, seconds for a day of 100,000). DETACH changes only the catalog, so
    the parent — which every ingest batch and raw-sample query uses — is locked for about a millisecond;
    the DROP then locks nothing but the detached table. A partition left detached by a crash in between is
    found by its name and dropped by the next run.
    """
    cutoff = raw_cutoff(now=now)
    dropped = 0
    for day, (name, attached) in sorted(_day_tables().items()):
        if dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC) > cutoff:
            continue
        with connection.cursor() as cursor:
            if attached:
                try:
                    with transaction.atomic():
                        cursor.execute(f'ALTER TABLE {PARENT} DETACH PARTITION "{name}"')
                except DatabaseError:
                    continue  # another retention run detached (and drops) it meanwhile
            cursor.execute(f'DROP TABLE IF EXISTS "{name}"')
        dropped += 1
    forget_known_partitions()
    return dropped


def _day_tables() -> dict[dt.date, tuple[str, bool]]:
    """day → (table name, attached to the parent): the partitions and any detached leftover, one catalog query."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, i.inhrelid IS NOT NULL FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid "
            "WHERE c.relkind = 'r' AND c.relname LIKE %s AND pg_table_is_visible(c.oid)",
            [PARENT.replace("_", r"\_") + r"\_p%"])
        rows = cursor.fetchall()
    out: dict[dt.date, tuple[str, bool]] = {}
    for name, attached in rows:
        match = PARTITION_RE.match(name)
        if match:
            out[dt.datetime.strptime(match.group(1), "%Y%m%d").date()] = (name, attached)  # noqa: DTZ007 - a date
    return out


def gpu_util_rollup_retention_apply() -> dict[str, int]:
    """Prune the heatmap's utilization blocks (per GPU and per node) with the hourly rollups' horizon: a block is
    deleted once no hourly rollup it was computed from can remain, i.e. it ends at or before the oldest hourly
    rollup's day. Hourly rollups are kept for good today, so this deletes nothing until they get a retention;
    then the blocks follow them instead of outliving their source. Idempotent."""
    from telemetry.models import GpuRollup1h, GpuUtilRollup, NodeUtilRollup

    # One scan of the hourly table a day (bucket alone is not indexed): cheap next to keeping orphaned blocks.
    oldest = GpuRollup1h.objects.order_by("bucket").values_list("bucket", flat=True).first()
    result = {"gpu_blocks_deleted": 0, "node_blocks_deleted": 0}
    if oldest is None:
        return result
    horizon = dt.datetime.combine(oldest.astimezone(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
    for key, model in (("gpu_blocks_deleted", GpuUtilRollup), ("node_blocks_deleted", NodeUtilRollup)):
        for span_h in {6, 24} if model is GpuUtilRollup else {1, 6, 24}:
            result[key] += model.objects.filter(
                span_h=span_h, bucket__lt=horizon - dt.timedelta(hours=span_h) + dt.timedelta(microseconds=1),
            ).delete()[0]
    return result
