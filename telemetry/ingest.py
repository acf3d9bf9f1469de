"""Bulk writes of raw GPU samples: PostgreSQL `COPY` on Django's connection, `bulk_create` elsewhere.

Both paths are idempotent: the key is (gpu_id, ts). On PostgreSQL the batch is first COPY'd straight
into the table inside a savepoint (the common case: nothing to conflict with); if any row already
exists the savepoint is rolled back and the batch goes through a temporary staging table and
`INSERT ... ON CONFLICT DO NOTHING`, so a replayed batch stores nothing twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.db import connection, transaction

from telemetry.collectors.nvml import GpuReading
from telemetry.models import GpuSample
from telemetry.retention import forget_known_partitions, gpu_sample_partitions_ensure

# Column order of the COPY text and of the tuples built by `sample_row`.
SAMPLE_COLUMNS: tuple[str, ...] = (
    "gpu_id", "ts", "source", "util_pct", "memory_util_pct", "memory_used_bytes", "power_w", "energy_mj",
    "temperature_c", "sm_clock_mhz", "mem_clock_mhz", "throttle_reasons", "ecc_uncorrected_errors",
    "retired_pages_pending", "remapped_rows_uncorrectable", "unsupported",
)
TABLE = GpuSample._meta.db_table
STAGE = "telemetry_gpusample_stage"
CHUNK_ROWS = 2000

SampleRow = tuple[Any, ...]


def sample_row(*, gpu_id: int, reading: GpuReading, source: str) -> SampleRow:
    """One raw-sample row in `SAMPLE_COLUMNS` order (`unsupported` stays a tuple of pairs until written)."""
    r = reading
    return (
        gpu_id, r.ts, source, r.util_pct, r.memory_util_pct, r.memory_used_bytes, r.power_w, r.energy_mj,
        r.temperature_c, r.sm_clock_mhz, r.mem_clock_mhz, r.throttle_reasons, r.ecc_uncorrected_errors,
        r.retired_pages_pending, r.remapped_rows_uncorrectable, r.unsupported or None,
    )


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"


def _text(value: str) -> str:
    return value.translate(_ESCAPES)


def _json(pairs: tuple[tuple[str, str], ...] | dict) -> str:
    return json.dumps(dict(pairs)).translate(_ESCAPES)


def copy_chunks(rows: Iterable[SampleRow], *, chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """The rows as PostgreSQL COPY text (tab-separated, \\N for NULL, backslash escapes), in chunks.

    Written out per column on purpose: this loop is most of the ingest path's CPU time, and the readings
    of one cycle share their timestamp and their unsupported-field reasons, so those are formatted once.
    """
    ts_text: dict[dt.datetime, str] = {}
    json_text: dict[object, str] = {}
    lines = []
    append = lines.append
    for (gpu_id, ts, source, util, mutil, mem, power, energy, temp, sm, memclk, throttle, ecc, retired, remapped,
         unsupported) in rows:
        t = ts_text.get(ts)
        if t is None:
            t = ts_text[ts] = ts.isoformat()
        if unsupported is None:
            u = NULL
        else:
            key = unsupported if isinstance(unsupported, tuple) else json.dumps(unsupported, sort_keys=True)
            u = json_text.get(key)
            if u is None:
                u = json_text[key] = _json(unsupported)
        append(
            f"{gpu_id}\t{t}\t{_text(source)}\t{NULL if util is None else util}\t"
            f"{NULL if mutil is None else mutil}\t{NULL if mem is None else mem}\t"
            f"{NULL if power is None else repr(power)}\t{NULL if energy is None else energy}\t"
            f"{NULL if temp is None else temp}\t{NULL if sm is None else sm}\t{NULL if memclk is None else memclk}\t"
            f"{NULL if throttle is None else throttle}\t{NULL if ecc is None else ecc}\t"
            f"{NULL if retired is None else ('t' if retired else 'f')}\t{NULL if remapped is None else remapped}\t"
            f"{u}\n"
        )
        if len(lines) >= chunk_rows:
            yield "".join(lines)
            lines.clear()
    if lines:
        yield "".join(lines)


def copy_text(rows: Iterable[SampleRow]) -> str:
    """All rows as one COPY text."""
    return "".join(copy_chunks(rows))


def _days(rows: Sequence[SampleRow]) -> set[dt.date]:
    return {ts.astimezone(dt.UTC).date() for ts in {row[1] for row in rows}}


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
    objects = []
    for row in rows:
        values = dict(zip(SAMPLE_COLUMNS, row, strict=True))
        if values["unsupported"] is not None:
            values["unsupported"] = dict(values["unsupported"])
        objects.append(GpuSample(**values))
    GpuSample.objects.bulk_create(objects, ignore_conflicts=True, batch_size=2000)
    # bulk_create(ignore_conflicts) cannot say how many rows were new; count when it is cheap (SQLite).
    return GpuSample.objects.count() - before if before is not None else len(rows)


def _write_postgresql(rows: Sequence[SampleRow]) -> int:
    import psycopg

    columns = ", ".join(SAMPLE_COLUMNS)
    with transaction.atomic():
        days = _days(rows)
        gpu_sample_partitions_ensure(days=days)
        for attempt in (1, 2):
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    with cursor.cursor.copy(f"COPY {TABLE} ({columns}) FROM STDIN") as copy:
                        # Chunks go out while the next ones are formatted: the server parses and inserts
                        # on the other core in the meantime.
                        for chunk in copy_chunks(rows):
                            copy.write(chunk)
                return len(rows)
            except psycopg.errors.UniqueViolation:
                break  # a replay, or overlapping batches: de-duplicate through the staging table
            except psycopg.errors.CheckViolation:
                if attempt == 2:
                    raise
                # "no partition for row": the process cache believed in a day that is gone; look again.
                forget_known_partitions()
                gpu_sample_partitions_ensure(days=days)
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (LIKE {TABLE} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            cursor.execute(f"TRUNCATE {STAGE}")
            with cursor.cursor.copy(f"COPY {STAGE} ({columns}) FROM STDIN") as copy:
                for chunk in copy_chunks(rows):
                    copy.write(chunk)
            cursor.execute(
                f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM {STAGE} ON CONFLICT DO NOTHING"
            )
            inserted = cursor.rowcount
            cursor.execute(f"TRUNCATE {STAGE}")
        return inserted


def gpu_samples_write_bulk_create(*, rows: Sequence[SampleRow]) -> int:
    """The SQLite path, callable on any database (tests and the benchmark compare it)."""
    return _write_bulk_create(rows)
