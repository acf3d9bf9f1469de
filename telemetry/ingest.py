"""Bulk writes of raw GPU samples: PostgreSQL `COPY` on Django's connection, `bulk_create` elsewhere.

Both paths are idempotent: the key is (gpu_id, ts). On PostgreSQL the batch is first COPY'd straight
into the table inside a savepoint (the common case: nothing to conflict with); if any row already
exists the savepoint is rolled back and the batch goes through a temporary staging table and
`INSERT ... ON CONFLICT DO NOTHING`, so a replayed batch stores nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, transaction

from telemetry.collectors.nvml import GpuReading
from telemetry.models import GpuSample
from telemetry.retention import gpu_sample_partitions_ensure

# Column order of the COPY text and of the tuples built by `sample_row`.
SAMPLE_COLUMNS: tuple[str, ...] = (
    "gpu_id", "ts", "source", "util_pct", "memory_util_pct", "memory_used_bytes", "power_w", "energy_mj",
    "temperature_c", "sm_clock_mhz", "mem_clock_mhz", "throttle_reasons", "ecc_uncorrected_errors",
    "retired_pages_pending", "remapped_rows_uncorrectable", "unsupported",
)
TABLE = GpuSample._meta.db_table
STAGE = "telemetry_gpusample_stage"

SampleRow = tuple[Any, ...]


def sample_row(*, gpu_id: int, reading: GpuReading, source: str) -> SampleRow:
    """One raw-sample row in `SAMPLE_COLUMNS` order."""
    r = reading
    return (
        gpu_id, r.ts, source, r.util_pct, r.memory_util_pct, r.memory_used_bytes, r.power_w, r.energy_mj,
        r.temperature_c, r.sm_clock_mhz, r.mem_clock_mhz, r.throttle_reasons, r.ecc_uncorrected_errors,
        r.retired_pages_pending, r.remapped_rows_uncorrectable, dict(r.unsupported) if r.unsupported else None,
    )


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value: Any) -> str:
    # PostgreSQL COPY text format: \N is NULL; backslash, tab and newlines are escaped.
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value).translate(_ESCAPES)
    return str(value).translate(_ESCAPES)


def copy_text(rows: Iterable[SampleRow]) -> str:
    """The rows as COPY text (one line per row, tab-separated)."""
    return "".join("\t".join([_copy_value(v) for v in row]) + "\n" for row in rows)


def _days(rows: Sequence[SampleRow]) -> set[dt.date]:
    return {row[1].astimezone(dt.UTC).date() for row in rows}


def gpu_samples_write(*, rows: Sequence[SampleRow]) -> int:
    """Store raw samples; returns how many were new. Rows whose (gpu, ts) exists are skipped."""
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        return _write_postgresql(rows)
    return _write_bulk_create(rows)


def _write_bulk_create(rows: Sequence[SampleRow]) -> int:
    gpu_sample_partitions_ensure(days=_days(rows))
    before = GpuSample.objects.count() if connection.vendor != "postgresql" else None
    objects = [GpuSample(**dict(zip(SAMPLE_COLUMNS, row, strict=True))) for row in rows]
    GpuSample.objects.bulk_create(objects, ignore_conflicts=True, batch_size=2000)
    # bulk_create(ignore_conflicts) cannot say how many rows were new; count when it is cheap (SQLite).
    return GpuSample.objects.count() - before if before is not None else len(rows)


def _write_postgresql(rows: Sequence[SampleRow]) -> int:
    import psycopg

    columns = ", ".join(SAMPLE_COLUMNS)
    data = copy_text(rows)
    with transaction.atomic():
        gpu_sample_partitions_ensure(days=_days(rows))
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                with cursor.cursor.copy(f"COPY {TABLE} ({columns}) FROM STDIN") as copy:
                    copy.write(data)
            return len(rows)
        except psycopg.errors.UniqueViolation:
            pass  # a replay, or overlapping batches: de-duplicate through the staging table
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (LIKE {TABLE} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            cursor.execute(f"TRUNCATE {STAGE}")
            with cursor.cursor.copy(f"COPY {STAGE} ({columns}) FROM STDIN") as copy:
                copy.write(data)
            cursor.execute(
                f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM {STAGE} ON CONFLICT DO NOTHING"
            )
            inserted = cursor.rowcount
            cursor.execute(f"TRUNCATE {STAGE}")
        return inserted


def gpu_samples_write_bulk_create(*, rows: Sequence[SampleRow]) -> int:
    """The SQLite path, callable on any database (tests and the benchmark compare it)."""
    return _write_bulk_create(rows)
