"""Writes of metering: scrape endpoints, record snapshots and reset-aware usage deltas, roll usage up.

Invariants (DESIGN.md §5): a delta is `cur - prev`, or `cur` when any counter of the series went back or the
process start time changed; a new series' first reading is a baseline; every write is keyed
((series, scraped_at), (series, interval_end), (series, bucket, bucket_start)) so running anything twice
changes nothing. Endpoint rows are locked (in id order) while a batch is recorded, so two workers recording
the same endpoint never compute two deltas from the same previous snapshot.

The previous reading of a series is its last counters, kept on the series (`EngineSeries.last_*`) and written in
the same transaction as the snapshot; `CounterSnapshot` is history only (day-partitioned on PostgreSQL, dropped by
`telemetry.retention`), never read by this path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from factory_portal.crypto import decrypt_secret
from sites.choices import EndpointHealth
from sites.models import ServingEndpoint
from telemetry.collectors import engines
from telemetry.collectors.fetch import FetchPolicy, FetchResult, FetchTarget, fetch_many_blocking
from telemetry.models.metering import CounterSnapshot, EngineSeries, UsageBucket, UsageDelta, UsageRollup
from telemetry.parsing import ParseError
from telemetry.retention import counter_snapshot_partitions_ensure, counter_snapshot_retention_apply

logger = logging.getLogger(__name__)

TOKEN_FIELDS = ("prompt_tokens", "generation_tokens", "requests_ok", "requests_failed", "ttft_count", "itl_count")
FLOAT_COUNTER_FIELDS = ("ttft_sum_s", "itl_sum_s")
COUNTER_FIELDS = TOKEN_FIELDS + FLOAT_COUNTER_FIELDS
GAUGE_FIELDS = ("running", "waiting", "kv_cache_usage")


@dataclass
class EndpointOutcome:
    """What one scrape of one endpoint gave: normalized series, or the reason it failed."""

    endpoint_id: int
    scraped_at: dt.datetime
    scrape: engines.EngineScrape | None = None
    error: str | None = None


@dataclass
class RecordSummary:
    endpoints: int = 0
    healthy: int = 0
    snapshots: int = 0
    deltas: int = 0
    skipped: int = 0  # readings at or before the series' latest snapshot (a retried or late poll)
    errors: dict[int, str] = field(default_factory=dict)


def series_key(*, model: str, labels: dict[str, str], split_labels: dict[str, str] | None = None) -> str:
    # Without split labels the key is what it was before they existed, so such series keep their history.
    parts: list = [model, sorted(labels.items())]
    if split_labels:
        parts.append(sorted(split_labels.items()))
    canonical = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def outcome_from_fetch(*, endpoint_id: int, engine: str, result: FetchResult) -> EndpointOutcome:
    """Turn a fetched page into normalized series (or the reason it cannot be used)."""
    scraped_at = dt.datetime.fromtimestamp(result.fetched_at, tz=dt.UTC)
    if result.error is not None:
        return EndpointOutcome(endpoint_id=endpoint_id, scraped_at=scraped_at, error=result.error)
    try:
        scrape = engines.normalize(result.text or "", engine=engine)
    except ParseError as exc:
        return EndpointOutcome(endpoint_id=endpoint_id, scraped_at=scraped_at, error=f"unparseable page: {exc}")
    except engines.EngineError as exc:
        return EndpointOutcome(endpoint_id=endpoint_id, scraped_at=scraped_at, error=str(exc))
    return EndpointOutcome(endpoint_id=endpoint_id, scraped_at=scraped_at, scrape=scrape)


def _as_int(value: float | None) -> int | None:
    return None if value is None else int(round(value))


def _reading_values(series: engines.EngineSeries) -> dict:
    values: dict = {f: _as_int(getattr(series, f)) for f in TOKEN_FIELDS}
    values.update({f: getattr(series, f) for f in FLOAT_COUNTER_FIELDS + GAUGE_FIELDS})
    values["requests_by_reason"] = (
        None if series.requests_by_reason is None
        else {k: int(round(v)) for k, v in series.requests_by_reason.items()}
    )
    values["process_start_time_s"] = series.process_start_time_s
    return values


def _origin_of_new_series(endpoint_last: CounterSnapshot | None, values: dict) -> CounterSnapshot | None:
    """Where a series never seen before starts counting from.

    On an endpoint scraped for the first time it is a baseline (None: nothing billed for tokens served before
    the endpoint was registered). On an endpoint already scraped successfully by the same engine process, the
    series was not on that page, so the engine created it since: all of its value was served in between and is
    counted from zero (a new `tenant_id`, LiteLLM `end_user`, model). After a process restart the reset rule
    gives the same. Tokens are never lost, and a series seen once is never counted from zero again.
    """
    if endpoint_last is None:
        return None
    pst_prev, pst_cur = endpoint_last.process_start_time_s, values["process_start_time_s"]
    zero = {f: 0 for f in COUNTER_FIELDS}
    reasons = values["requests_by_reason"]
    return CounterSnapshot(
        scraped_at=endpoint_last.scraped_at,
        process_start_time_s=pst_cur if pst_prev is None or pst_cur is None else pst_prev,
        requests_by_reason=None if reasons is None else {k: 0 for k in reasons},
        **zero,
    )


def _has_counters(prev: CounterSnapshot, cur: dict) -> bool:
    """False for a gauge-only series (e.g. SGLang scheduler gauges per `tp_rank`): no delta row to write."""
    return (cur["requests_by_reason"] is not None or prev.requests_by_reason is not None
            or any(cur[f] is not None or getattr(prev, f) is not None for f in COUNTER_FIELDS))


def _delta(prev: CounterSnapshot, cur: dict) -> tuple[dict, bool]:
    """The usage between `prev` and the reading `cur` (mutated: missing counters carry prev's value).

    A changed process start time is a reset (the new values are the delta); so is a decrease of any counter when
    the engine prints no process start time, or a fall below half within the same process. A smaller dip within
    the same process counts nothing (jitter).
    A counter missing now (NaN, or not printed this time) keeps the previous value so the next reading is
    diffed against the last known one; a counter that first appears in an existing series is a baseline.
    """
    pst_prev, pst_cur = prev.process_start_time_s, cur["process_start_time_s"]
    known_process = pst_prev is not None and pst_cur is not None
    reset = known_process and pst_prev != pst_cur
    prev_reasons = prev.requests_by_reason or {}
    cur_reasons = cur["requests_by_reason"]
    if not reset:
        # Without a process start time any decrease means a restart. With the same known process, a counter that
        # fell below half its value was re-created (one engine of several restarting behind the same API
        # server); a smaller dip is jitter: it counts nothing and the snapshot keeps the high-water mark, so
        # nothing is counted twice when it climbs back.
        floor = 0.5 if known_process else 1.0
        reset = any(
            cur[f] is not None and getattr(prev, f) is not None and cur[f] < floor * getattr(prev, f)
            for f in COUNTER_FIELDS
        ) or any(k in prev_reasons and v < floor * prev_reasons[k] for k, v in (cur_reasons or {}).items())
    delta: dict = {}
    for f in COUNTER_FIELDS:
        before, now = getattr(prev, f), cur[f]
        if now is None:
            if before is not None and not reset:
                cur[f] = before
            delta[f] = 0
        elif reset:
            delta[f] = now
        elif before is None:
            delta[f] = 0
        else:
            delta[f] = max(0, now - before)
            cur[f] = max(now, before)
    reasons_delta: dict[str, int] = {}
    if cur_reasons is not None or prev_reasons:
        merged = dict(cur_reasons or {})
        if not reset:
            for k, v in prev_reasons.items():
                merged[k] = max(merged.get(k, v), v)
        for k, v in merged.items():
            d = v if reset else v - prev_reasons.get(k, v)
            if d:
                reasons_delta[k] = d
        cur["requests_by_reason"] = merged
    delta["requests_by_reason"] = reasons_delta
    return delta, reset


def scrape_outcomes_record(*, outcomes: Sequence[EndpointOutcome]) -> RecordSummary:
    """Store one poll of many endpoints: health, series, snapshots and deltas, in one transaction.

    The statements are few and fixed per batch, whatever its size: lock the endpoints, update their health, upsert
    the series (ids back, with each series' last counters), insert snapshots and deltas
    (`ON CONFLICT DO NOTHING`), move the series' last counters forward. On PostgreSQL each is one set-based
    statement with array parameters (`_PgStore`); elsewhere the ORM does the same (`_OrmStore`).
    """
    summary = RecordSummary(endpoints=len(outcomes))
    if not outcomes:
        return summary
    ids = sorted({o.endpoint_id for o in outcomes})
    store: _Store = _PgStore() if connection.vendor == "postgresql" else _OrmStore()
    with transaction.atomic():
        served_model = store.lock_endpoints(ids)
        marks: dict[int, tuple[str, str, dt.datetime, str | None]] = {}
        readings: list[tuple[EndpointOutcome, engines.EngineSeries, tuple[int, str]]] = []
        series_rows: dict[tuple[int, str], _SeriesRow] = {}
        for outcome in outcomes:
            endpoint_id = outcome.endpoint_id
            if endpoint_id not in served_model:
                continue  # deleted since the poll was scheduled
            if outcome.scrape is None:
                error = (outcome.error or "unknown error")[:2000]
                marks[endpoint_id] = (EndpointHealth.UNHEALTHY, error, outcome.scraped_at, None)
                summary.errors[endpoint_id] = error
                continue
            marks[endpoint_id] = (EndpointHealth.HEALTHY, "", outcome.scraped_at, outcome.scrape.engine)
            summary.healthy += 1
            for s in outcome.scrape.series:
                model = s.model if s.model is not None else served_model[endpoint_id]
                # Engines without a model label take the endpoint's configured model for display, but not in the
                # key: editing `served_model` must not start a new series (it would be counted from zero again).
                key = series_key(model=s.model or "", labels=s.labels, split_labels=s.split_labels)
                row = series_rows.get((endpoint_id, key))
                if row is None:
                    series_rows[(endpoint_id, key)] = _SeriesRow(
                        endpoint_id=endpoint_id, key=key, model=model[:300], labels=s.labels,
                        split_labels=s.split_labels, first_seen_at=outcome.scraped_at,
                        last_seen_at=outcome.scraped_at)
                else:
                    row.last_seen_at = max(row.last_seen_at, outcome.scraped_at)
                readings.append((outcome, s, (endpoint_id, key)))
        store.mark_endpoints(marks)
        if not series_rows:
            return summary
        pk_by_key = store.upsert_series(list(series_rows.values()))
        latest = store.latest_snapshots(set(pk_by_key.values()))
        endpoint_of = {pk: endpoint_id for (endpoint_id, _key), pk in pk_by_key.items()}
        # Each endpoint's known snapshots (any series): a new series is compared with the endpoint's last
        # successful scrape before its own.
        endpoint_snaps: dict[int, list] = {}
        for series_id, snap in latest.items():
            endpoint_snaps.setdefault(endpoint_of[series_id], []).append(snap)
        snapshots: list[dict] = []
        deltas: list[dict] = []
        written: set[int] = set()
        for outcome, s, series in sorted(readings, key=lambda r: r[0].scraped_at):
            series_id = pk_by_key[series]
            endpoint_id = series[0]
            prev = latest.get(series_id)
            if prev is not None and prev.scraped_at >= outcome.scraped_at:
                summary.skipped += 1
                continue
            values = _reading_values(s)
            if prev is None:
                earlier = [x for x in endpoint_snaps.get(endpoint_id, ()) if x.scraped_at < outcome.scraped_at]
                last = max(earlier, key=lambda x: x.scraped_at) if earlier else None
                prev = _origin_of_new_series(last, values)
            if prev is not None and _has_counters(prev, values):
                delta, reset = _delta(prev, values)
                deltas.append(dict(
                    series_id=series_id, endpoint_id=endpoint_id, interval_start=prev.scraped_at,
                    interval_end=outcome.scraped_at, reset=reset, **delta,
                ))
            snapshot = SimpleNamespace(series_id=series_id, scraped_at=outcome.scraped_at, **values)
            snapshots.append(snapshot.__dict__)
            latest[series_id] = snapshot
            written.add(series_id)
            endpoint_snaps.setdefault(endpoint_id, []).append(snapshot)
        if snapshots:
            counter_snapshot_partitions_ensure(days={r["scraped_at"].astimezone(dt.UTC).date() for r in snapshots})
        store.insert_snapshots(snapshots)
        store.insert_deltas(deltas)
        # Only the newest new reading of each series; never older than what is stored (the SQL checks it too).
        store.store_last_counters([vars(latest[series_id]) for series_id in written])
        summary.snapshots, summary.deltas = len(snapshots), len(deltas)
    return summary


@dataclass
class _SeriesRow:
    endpoint_id: int
    key: str
    model: str
    labels: dict
    split_labels: dict
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime


class _Store:
    """The statements of `scrape_outcomes_record`, inside its transaction."""

    def lock_endpoints(self, ids: list[int]) -> dict[int, str]:
        """Lock the endpoint rows in id order; their `served_model` by id (deleted ones absent)."""
        raise NotImplementedError

    def mark_endpoints(self, marks: dict[int, tuple[str, str, dt.datetime, str | None]]) -> None:
        """Set (health, last_error, last_scraped_at, detected_engine — None: unchanged) per endpoint."""
        raise NotImplementedError

    def upsert_series(self, rows: list[_SeriesRow]) -> dict[tuple[int, str], int]:
        """Insert new series, move `last_seen_at` of known ones; the id of each (endpoint, key)."""
        raise NotImplementedError

    def latest_snapshots(self, series_ids: set[int]) -> dict[int, Any]:
        """Each series' last counters (attributes as on `CounterSnapshot`: series_id, scraped_at, the counters);
        series never recorded absent."""
        raise NotImplementedError

    def store_last_counters(self, rows: list[dict]) -> None:
        """Make these readings the series' last counters, each only where it is newer than the stored one (and, on
        PostgreSQL, move `last_seen_at` of every series of the batch, which its `upsert_series` leaves)."""
        raise NotImplementedError

    def insert_snapshots(self, rows: list[dict]) -> None:
        raise NotImplementedError

    def insert_deltas(self, rows: list[dict]) -> None:
        raise NotImplementedError


SNAPSHOT_COLUMNS = ("series_id", "scraped_at", "process_start_time_s", *COUNTER_FIELDS, "requests_by_reason",
                    *GAUGE_FIELDS)
# What the next reading is diffed against: `EngineSeries.last_<name>` for each.
LAST_COLUMNS = ("scraped_at", "process_start_time_s", *COUNTER_FIELDS, "requests_by_reason")
DELTA_COLUMNS = ("series_id", "endpoint_id", "interval_start", "interval_end", *COUNTER_FIELDS, "requests_by_reason",
                 "reset")
_SQL_TYPE = {
    "series_id": "bigint", "endpoint_id": "bigint", "scraped_at": "timestamptz", "interval_start": "timestamptz",
    "interval_end": "timestamptz", "requests_by_reason": "text", "reset": "boolean",
    **{f: "bigint" for f in TOKEN_FIELDS},
    **{f: "float8" for f in ("process_start_time_s", *FLOAT_COUNTER_FIELDS, *GAUGE_FIELDS)},
}


def _insert_sql(table: str, columns: Sequence[str], conflict: str, *, extra: dict[str, str] | None = None) -> str:
    """INSERT ... SELECT FROM unnest(one array per column) ON CONFLICT (...) DO NOTHING: one statement a batch."""
    extra = extra or {}
    names = ", ".join([*columns, *extra])
    arrays = ", ".join(f"%s::{_SQL_TYPE[c]}[]" for c in columns)
    select = ", ".join([f"v.{c}::jsonb" if c == "requests_by_reason" else f"v.{c}" for c in columns]
                       + list(extra.values()))
    return (f"INSERT INTO {table} ({names}) SELECT {select} FROM unnest({arrays}) AS v({', '.join(columns)}) "
            f"ON CONFLICT ({conflict}) DO NOTHING")


_FLOATS = frozenset(c for c, t in _SQL_TYPE.items() if t == "float8")


def _column_arrays(rows: list[dict], columns: Sequence[str]) -> list[list]:
    arrays = []
    for c in columns:
        if c == "requests_by_reason":
            arrays.append([None if r[c] is None else json.dumps(r[c]) for r in rows])
        elif c in _FLOATS:  # psycopg types a list by its first element: ints and floats must not mix
            arrays.append([None if r[c] is None else float(r[c]) for r in rows])
        else:
            arrays.append([r[c] for r in rows])
    return arrays


class _PgStore(_Store):
    """PostgreSQL: set-based statements with array parameters bound server-side (Django binds client-side,
    which renders every array element into the SQL text in Python)."""

    def __init__(self) -> None:
        import psycopg

        connection.ensure_connection()
        self.cursor = psycopg.Cursor(connection.connection)
        self.endpoints = ServingEndpoint._meta.db_table
        self.series = EngineSeries._meta.db_table
        self.snapshots = CounterSnapshot._meta.db_table
        self.deltas = UsageDelta._meta.db_table
        self.last: dict[int, SimpleNamespace] = {}  # filled by upsert_series: the series' last counters
        self.seen: dict[int, dt.datetime] = {}  # filled by upsert_series: last_seen_at per series of the batch

    def lock_endpoints(self, ids: list[int]) -> dict[int, str]:
        self.cursor.execute(
            f"SELECT id, served_model FROM {self.endpoints} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE",
            [ids])
        return dict(self.cursor.fetchall())

    def mark_endpoints(self, marks: dict[int, tuple[str, str, dt.datetime, str | None]]) -> None:
        if not marks:
            return
        ids = list(marks)
        health, error, ts, engine = (list(col) for col in zip(*marks.values(), strict=True))
        self.cursor.execute(
            f"UPDATE {self.endpoints} AS e SET health = v.health, last_error = v.last_error, "
            "last_scraped_at = v.ts, detected_engine = COALESCE(v.engine, e.detected_engine) "
            "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[], %s::text[]) "
            "AS v(id, health, last_error, ts, engine) WHERE e.id = v.id",
            [ids, [str(h) for h in health], error, ts, engine])

    def upsert_series(self, rows: list[_SeriesRow]) -> dict[tuple[int, str], int]:
        # Insert the new series and read the known ones with their last counters, in one statement, writing no row
        # that exists: `last_seen_at` moves in `store_last_counters`' UPDATE, so a series gets one new row version
        # per batch. The SELECT sees the rows committed before this statement; a series of these endpoints cannot
        # be inserted meanwhile by another transaction, since their rows are locked by this one.
        last = ", ".join("s.last_" + c for c in LAST_COLUMNS)
        self.cursor.execute(
            "WITH v AS (SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], "
            "%s::timestamptz[], %s::timestamptz[]) AS v(endpoint_id, key, model, labels, split_labels, first_seen, "
            "last_seen)), "
            f"ins AS (INSERT INTO {self.series} AS s (endpoint_id, key, model, labels, split_labels, first_seen_at, "
            "last_seen_at, created_at, updated_at) "
            "SELECT v.endpoint_id, v.key, v.model, v.labels::jsonb, v.split_labels::jsonb, v.first_seen, v.last_seen, "
            "now(), now() FROM v ON CONFLICT (endpoint_id, key) DO NOTHING "
            f"RETURNING s.id, s.endpoint_id, s.key, {last}) "
            f"SELECT * FROM ins UNION ALL SELECT s.id, s.endpoint_id, s.key, {last} FROM {self.series} s "
            "JOIN v ON s.endpoint_id = v.endpoint_id AND s.key = v.key",
            [[r.endpoint_id for r in rows], [r.key for r in rows], [r.model for r in rows],
             [json.dumps(r.labels) for r in rows], [json.dumps(r.split_labels) for r in rows],
             [r.first_seen_at for r in rows], [r.last_seen_at for r in rows]])
        pk_by_key = {}
        self.last = {}
        for pk, endpoint_id, key, *last_values in self.cursor.fetchall():
            pk_by_key[(endpoint_id, key)] = pk
            if last_values[0] is not None:  # last_scraped_at: the series has been recorded before
                snap = SimpleNamespace(series_id=pk, **dict(zip(LAST_COLUMNS, last_values, strict=True)))
                if isinstance(snap.requests_by_reason, str | bytes):  # Django loads jsonb as text on its connections
                    snap.requests_by_reason = json.loads(snap.requests_by_reason)
                self.last[pk] = snap
        self.seen = {pk_by_key[(r.endpoint_id, r.key)]: r.last_seen_at for r in rows}
        return pk_by_key

    def latest_snapshots(self, series_ids: set[int]) -> dict[int, Any]:
        return {pk: snap for pk, snap in self.last.items() if pk in series_ids}

    def store_last_counters(self, rows: list[dict]) -> None:
        # One UPDATE for every series of the batch: `last_seen_at` for all, the last counters where a reading is
        # newer than the stored one (never backwards: a retried or late reading leaves them).
        by_id = {r["series_id"]: r for r in rows}
        ids = list(self.seen)
        if not ids:
            return
        full = [by_id.get(pk) or dict.fromkeys(LAST_COLUMNS) for pk in ids]
        columns = ("series_id", "last_seen", *LAST_COLUMNS)
        arrays = [ids, [self.seen[pk] for pk in ids], *_column_arrays(full, LAST_COLUMNS)]
        types = {"last_seen": "timestamptz", **_SQL_TYPE}
        newer = "v.scraped_at IS NOT NULL AND (s.last_scraped_at IS NULL OR s.last_scraped_at < v.scraped_at)"
        values = ", ".join(
            f"last_{c} = CASE WHEN {newer} THEN v.{c}{'::jsonb' if c == 'requests_by_reason' else ''} "
            f"ELSE s.last_{c} END" for c in LAST_COLUMNS)
        self.cursor.execute(
            f"UPDATE {self.series} AS s SET last_seen_at = v.last_seen, {values} "
            f"FROM unnest({', '.join(f'%s::{types[c]}[]' for c in columns)}) AS v({', '.join(columns)}) "
            "WHERE s.id = v.series_id",
            arrays)

    def insert_snapshots(self, rows: list[dict]) -> None:
        if rows:
            self.cursor.execute(_insert_sql(self.snapshots, SNAPSHOT_COLUMNS, "series_id, scraped_at"),
                                _column_arrays(rows, SNAPSHOT_COLUMNS))

    def insert_deltas(self, rows: list[dict]) -> None:
        if rows:
            self.cursor.execute(
                _insert_sql(self.deltas, DELTA_COLUMNS, "series_id, interval_end", extra={"rolled_up": "false"}),
                _column_arrays(rows, DELTA_COLUMNS))


class _OrmStore(_Store):
    """Any other database (SQLite, the embedded default): the same writes through the ORM."""

    def lock_endpoints(self, ids: list[int]) -> dict[int, str]:
        return dict(ServingEndpoint.objects.select_for_update().filter(pk__in=ids).order_by("pk")
                    .values_list("pk", "served_model"))

    def mark_endpoints(self, marks: dict[int, tuple[str, str, dt.datetime, str | None]]) -> None:
        endpoints = list(ServingEndpoint.objects.filter(pk__in=list(marks)))
        for e in endpoints:
            e.health, e.last_error, e.last_scraped_at, engine = marks[e.pk]
            e.detected_engine = engine if engine is not None else e.detected_engine
        ServingEndpoint.objects.bulk_update(endpoints, ["health", "last_error", "last_scraped_at", "detected_engine"])

    def upsert_series(self, rows: list[_SeriesRow]) -> dict[tuple[int, str], int]:
        EngineSeries.objects.bulk_create(
            [EngineSeries(**vars(r)) for r in rows], update_conflicts=True, unique_fields=["endpoint", "key"],
            update_fields=["last_seen_at"],
        )
        endpoint_ids = {r.endpoint_id for r in rows}
        return {(e, k): pk for e, k, pk in EngineSeries.objects.filter(endpoint_id__in=endpoint_ids)
                .values_list("endpoint_id", "key", "pk")}

    def latest_snapshots(self, series_ids: set[int]) -> dict[int, Any]:
        ids = list(series_ids)
        if not ids:
            return {}
        rows = (EngineSeries.objects.filter(pk__in=ids, last_scraped_at__isnull=False)
                .values_list("pk", *(f"last_{c}" for c in LAST_COLUMNS)))
        return {pk: SimpleNamespace(series_id=pk, **dict(zip(LAST_COLUMNS, last, strict=True))) for pk, *last in rows}

    def store_last_counters(self, rows: list[dict]) -> None:
        for r in rows:
            (EngineSeries.objects.filter(pk=r["series_id"])
             .filter(Q(last_scraped_at__isnull=True) | Q(last_scraped_at__lt=r["scraped_at"]))
             .update(**{f"last_{c}": r[c] for c in LAST_COLUMNS}))

    def insert_snapshots(self, rows: list[dict]) -> None:
        CounterSnapshot.objects.bulk_create([CounterSnapshot(**r) for r in rows], ignore_conflicts=True)

    def insert_deltas(self, rows: list[dict]) -> None:
        UsageDelta.objects.bulk_create([UsageDelta(**r) for r in rows], ignore_conflicts=True)


def endpoints_fetch(*, endpoints: Sequence[ServingEndpoint], policy: FetchPolicy | None = None,
                    concurrency: int = 256) -> list[EndpointOutcome]:
    """Fetch and normalize the endpoints' pages concurrently (no database writes)."""
    targets = [(e.pk, e.engine, e.metrics_url, e.bearer_token) for e in endpoints]
    return _fetch_outcomes(targets, policy=policy, concurrency=concurrency)


def _fetch_outcomes(targets: Sequence[tuple[int, str, str, str]], *, policy: FetchPolicy | None,
                    concurrency: int) -> list[EndpointOutcome]:
    policy = policy or FetchPolicy.from_settings()
    # Connections are kept for this worker's next batch (engines that keep them alive are not reconnected).
    results = fetch_many_blocking([FetchTarget(key=pk, url=url, bearer_token=token) for pk, _, url, token in targets],
                                  policy, concurrency=concurrency)
    engine_of = {pk: engine for pk, engine, _, _ in targets}
    return [outcome_from_fetch(endpoint_id=r.key, engine=engine_of[r.key], result=r) for r in results]


def endpoints_scrape(*, endpoint_ids: Sequence[int], concurrency: int = 256) -> RecordSummary:
    """Poll these endpoints once: fetch concurrently, then record everything in one transaction."""
    rows = (ServingEndpoint.objects.filter(pk__in=endpoint_ids, enabled=True).order_by("pk")
            .values_list("pk", "engine", "metrics_url", "bearer_token_encrypted"))
    # Plain rows, not model instances: a batch is hundreds of endpoints and only these columns are needed.
    targets = [(pk, engine, url, decrypt_secret(token)) for pk, engine, url, token in rows]
    outcomes = _fetch_outcomes(targets, policy=None, concurrency=concurrency)
    summary = scrape_outcomes_record(outcomes=outcomes)
    for endpoint_id, error in summary.errors.items():
        logger.info("endpoint %s unhealthy: %s", endpoint_id, error)
    return summary


def endpoints_scrape_schedule(*, batch_size: int = 250, expires_s: float | None = None) -> int:
    """Fan out: enqueue one scrape task per batch of enabled endpoints on queue `scrape`. Returns the batches."""
    from django.conf import settings

    from telemetry.tasks.metering import endpoints_scrape_task

    expires = expires_s if expires_s is not None else settings.ENGINE_SCRAPE_INTERVAL_S
    ids = list(ServingEndpoint.objects.filter(enabled=True).order_by("pk").values_list("pk", flat=True))
    batches = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
    for batch in batches:
        # Queue `scrape` comes from CELERY_TASK_ROUTES.
        endpoints_scrape_task.apply_async(kwargs={"endpoint_ids": batch}, expires=expires)
    return len(batches)


_SUMS = ("prompt_tokens", "generation_tokens", "requests_ok", "requests_failed", "ttft_sum_s", "ttft_count",
         "itl_sum_s", "itl_count")


# Rollups run one at a time (a transaction-level advisory lock on PostgreSQL; SQLite serializes writers anyway),
# so two runs never upsert the same bucket from different views of the deltas.
_ROLLUP_LOCK_ID = 0x6D65_7465  # "mete"
ROLLUP_BATCH = 20_000


def _hour(ts: dt.datetime) -> dt.datetime:
    return ts.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def usage_rollup(*, batch_size: int = ROLLUP_BATCH) -> int:
    """Roll every not-yet-rolled-up delta into its hourly and daily buckets, however late it was written.

    Each batch claims deltas by a conditional UPDATE of `rolled_up` and, in the same transaction, recomputes every
    (series, hour) bucket they touch from all of that bucket's deltas, then every touched (series, day) from the
    hourly rows, and upserts both. Recomputing from the facts makes a re-run a no-op, a late delta (a batch that
    committed hours after it fetched) lands in its own hour, and after downtime the runs catch up batch by batch.
    Returns the hourly rows written.
    """
    written = 0
    while True:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ROLLUP_LOCK_ID])
            claimed = list(
                UsageDelta.objects.filter(rolled_up=False).order_by("pk")
                .values_list("pk", "series_id", "interval_end")[:batch_size]
            )
            if not claimed:
                return written
            UsageDelta.objects.filter(pk__in=[pk for pk, _, _ in claimed], rolled_up=False).update(rolled_up=True)
            hours: dict[dt.datetime, set[int]] = {}
            for _, series_id, interval_end in claimed:
                hours.setdefault(_hour(interval_end), set()).add(series_id)
            written += _recompute_hours(hours)
            days: dict[dt.datetime, set[int]] = {}
            for hour, series_ids in hours.items():
                days.setdefault(hour.replace(hour=0), set()).update(series_ids)
            _recompute_days(days)
        if len(claimed) < batch_size:
            return written


def _recompute_hours(hours: dict[dt.datetime, set[int]]) -> int:
    rows: list[UsageRollup] = []
    for hour, series_ids in sorted(hours.items()):
        sums = (
            UsageDelta.objects.filter(series_id__in=series_ids, interval_end__gte=hour,
                                      interval_end__lt=hour + dt.timedelta(hours=1))
            .values("series_id", "endpoint_id")
            .annotate(model=F("series__model"), **{f"s_{f}": Sum(f) for f in _SUMS})
            .order_by()
        )
        rows += [
            UsageRollup(series_id=r["series_id"], endpoint_id=r["endpoint_id"], model=r["model"],
                        bucket=UsageBucket.HOUR, bucket_start=hour, **{f: r[f"s_{f}"] or 0 for f in _SUMS})
            for r in sums
        ]
    _upsert_rollups(rows)
    return len(rows)


def _recompute_days(days: dict[dt.datetime, set[int]]) -> None:
    rows: list[UsageRollup] = []
    for day, series_ids in sorted(days.items()):
        sums = (
            UsageRollup.objects.filter(bucket=UsageBucket.HOUR, series_id__in=series_ids, bucket_start__gte=day,
                                       bucket_start__lt=day + dt.timedelta(days=1))
            .values("series_id", "endpoint_id", "model")
            .annotate(**{f"s_{f}": Sum(f) for f in _SUMS})
            .order_by()
        )
        rows += [
            UsageRollup(series_id=r["series_id"], endpoint_id=r["endpoint_id"], model=r["model"],
                        bucket=UsageBucket.DAY, bucket_start=day, **{f: r[f"s_{f}"] or 0 for f in _SUMS})
            for r in sums
        ]
    _upsert_rollups(rows)


def _upsert_rollups(rows: list[UsageRollup]) -> None:
    if rows:
        UsageRollup.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["series", "bucket", "bucket_start"],
            update_fields=["model", *_SUMS], batch_size=1000,
        )


def counter_snapshots_prune(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Counter snapshot retention (hourly): make the next days' partitions, drop the days wholly older than
    RAW_SAMPLE_RETENTION_DAYS (PostgreSQL; a DELETE elsewhere). See `counter_snapshot_retention_apply`.

    Nothing has to be kept for the next reading: an idle series' last counters live on the series
    (`EngineSeries.last_*`), whatever the age of its last snapshot. Deltas and rollups are never touched.
    """
    return counter_snapshot_retention_apply(now=now or timezone.now())

