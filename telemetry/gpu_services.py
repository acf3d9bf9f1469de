"""Writes of GPU telemetry: ingest a node's report (inventory sync + raw samples), staleness, poll
scheduling, agent tokens and collector settings. Tasks and the API are thin wrappers around these."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from factory_portal.exceptions import ServiceError
from sites.choices import GpuStatus, NodeStatus
from sites.models import Gpu, MigDevice, Node, Site
from sites.services import node_issue_agent_token
from telemetry.collectors.nvml import SOURCE_SIMULATED, GpuReading, NodeReading
from telemetry.ingest import SampleRow, gpu_samples_write, sample_row
from telemetry.models import GpuCollectorMode, GpuPollClaim, NodeGpuCollector
from telemetry.retention import raw_cutoff

# Statuses a report may change; maintenance and retired are set by people and stay.
AUTOMATIC_NODE_STATUSES = (NodeStatus.PENDING, NodeStatus.ONLINE, NodeStatus.STALE, NodeStatus.UNHEALTHY)
STALE_AFTER_INTERVALS = 3


class GpuOwnershipError(ServiceError):
    """A report names a GPU that is registered on another node (possibly another partner's)."""


@dataclass(frozen=True)
class IngestResult:
    samples_written: int = 0
    samples_refused: int = 0
    gpus_created: int = 0
    gpus_lost: int = 0
    node_status: str = ""


def _gpu_fields(reading: GpuReading, report: NodeReading) -> dict:
    return {
        "index": reading.index, "name": reading.name[:120], "memory_total_bytes": reading.memory_total_bytes,
        "serial": (reading.serial or "")[:64], "pci_bus_id": (reading.pci_bus_id or "")[:32],
        "driver_version": (report.driver_version or "")[:32],
        "cuda_driver_version": (report.cuda_driver_version or "")[:32], "mig_mode": reading.mig_mode,
        "status": GpuStatus.OK, "last_seen_at": report.ts, "last_error": "",
    }


# What the GPU row keeps of its newest reading (`Gpu.last_util_pct`, `last_power_w`): the live cards' figures.
LatestFigures = tuple[dt.datetime, int | None, float | None]
_SMALLINT = range(-32768, 32768)


def _latest_figures(reading: GpuReading) -> dict:
    """The reading's live figures as the GPU row stores them. A value the column cannot hold is kept as NULL: the
    sample table refuses that reading on its own (its report is refused), but the one UPDATE of the batch's GPU rows
    must not fail with it and take the other reports down."""
    util, power = reading.util_pct, reading.power_w
    ok_util = isinstance(util, int) and not isinstance(util, bool) and util in _SMALLINT
    ok_power = isinstance(power, int | float) and not isinstance(power, bool)
    return {"last_util_pct": util if ok_util else None, "last_power_w": float(power) if ok_power else None}


def _latest(reading: GpuReading, ts: dt.datetime) -> LatestFigures:
    figures = _latest_figures(reading)
    return ts, figures["last_util_pct"], figures["last_power_w"]


STATIC_SYNC_FIELDS = ["index", "name", "memory_total_bytes", "serial", "pci_bus_id", "driver_version",
                      "cuda_driver_version", "mig_mode"]


@transaction.atomic
def gpu_report_ingest(*, node_id: int, report: NodeReading, now: dt.datetime | None = None) -> IngestResult:
    """Apply one collection cycle of a node: sync its GPUs/MIG devices, store raw samples, update the node.

    Idempotent: the same report twice stores its samples once and leaves the inventory as it was.
    An older report (replayed, or late) stores its samples but never rolls the inventory back.
    Raises GpuOwnershipError (nothing written) when a GPU UUID belongs to another node.
    """
    now = now or timezone.now()
    # One report is a batch of one: the same rules, and the same few statements when nothing changed.
    batch = _reports_apply([(node_id, report)], now=now)
    outcome = batch.outcomes[0]
    if isinstance(outcome, Exception):
        raise outcome
    return dataclasses.replace(outcome, samples_written=batch.samples_written)


@dataclass(frozen=True)
class QueuedReport:
    """A node report as the `ingest` queue delivers it: the node's id and `reading_to_dict`'s payload."""

    node_id: int
    payload: dict
    # The poll order's central timestamp when the report answers a scheduled NVML poll (telemetry/clock.py).
    ordered_at: str | None = None
    window_s: float | None = None


@dataclass(frozen=True)
class BatchResult:
    reports: int = 0
    samples_written: int = 0
    # Reports whose inventory changed (new GPU, fault, lost GPU, driver update...), applied one by one.
    synced_one_by_one: int = 0
    refused: tuple[str, ...] = ()


def gpu_report_from_payload(*, queued: QueuedReport, now: dt.datetime,
                            offsets: dict[int, float | None]) -> NodeReading:
    """A queued payload → the NodeReading to store, on the server's clock (telemetry/clock.py; `offsets` are the
    nodes' recorded clock offsets, read once per batch). Every report of a batch passes here exactly once."""
    from telemetry.clock import node_report_from_queue

    return node_report_from_queue(node_id=queued.node_id, payload=queued.payload, ordered_at=queued.ordered_at,
                                  window_s=queued.window_s, received_at=now, offsets=offsets)


@transaction.atomic
def gpu_reports_ingest(*, reports: Sequence[QueuedReport], now: dt.datetime | None = None) -> BatchResult:
    """Apply many node reports (what an ingest worker found waiting) in one transaction with one COPY.

    Each report keeps every rule of `gpu_report_ingest`, in the order given. A report that cannot be
    applied (unknown node, malformed payload, another node's GPU, values the table refuses) is refused
    on its own — noted on its node where there is one — and the others are stored.
    """
    now = now or timezone.now()
    items: list[tuple[int, NodeReading]] = []
    refused: list[str] = []
    offsets = dict(Node.objects.filter(pk__in=[r.node_id for r in reports if isinstance(r.node_id, int)],
                                       ).values_list("pk", "clock_offset_s"))
    for queued in reports:
        if not isinstance(queued.node_id, int) or not isinstance(queued.payload, dict):
            refused.append(f"report for node {queued.node_id!r}: not a node id and a report")
            continue
        try:
            items.append((queued.node_id, gpu_report_from_payload(queued=queued, now=now, offsets=offsets)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            refused.append(f"report for node {queued.node_id}: malformed ({type(exc).__name__}: {exc})"[:500])
    batch = _reports_apply(items, now=now)
    notes: dict[int, str] = {}
    for (node_id, _), outcome in zip(items, batch.outcomes, strict=True):
        if isinstance(outcome, GpuOwnershipError | SampleRefusedError):
            notes[node_id] = outcome.message[:2000]
            refused.append(f"node {node_id}: {outcome.message}")
        elif isinstance(outcome, Node.DoesNotExist):
            refused.append(f"node {node_id} does not exist")
    for node_id, message in notes.items():
        Node.objects.filter(pk=node_id).update(last_error=message, updated_at=now)
    return BatchResult(reports=len(reports), samples_written=batch.samples_written,
                       synced_one_by_one=batch.synced_one_by_one, refused=tuple(refused))


class SampleRefusedError(ServiceError):
    """The report's readings hold values the sample table refuses (out of range, wrong type)."""


@dataclass
class _Applied:
    outcomes: list[IngestResult | Exception]
    samples_written: int
    synced_one_by_one: int


@dataclass(frozen=True)
class _KnownGpu:
    pk: int
    status: str
    last_seen_at: dt.datetime | None
    static: tuple


def _static(reading: GpuReading, report: NodeReading) -> tuple:
    fields = _gpu_fields(reading, report)
    return tuple(fields[k] for k in STATIC_SYNC_FIELDS)


def _reports_apply(items: Sequence[tuple[int, NodeReading]], *, now: dt.datetime) -> _Applied:
    """The ingest of a batch (inside the caller's transaction). Nodes are locked in id order, so batches that
    share nodes wait for each other instead of deadlocking. A node all of whose reports only refresh known,
    unchanged GPUs (the steady state) is applied set-based; any other node's reports go one by one through
    `_report_sync`, each in a savepoint. All samples are written by one COPY at the end."""
    outcomes: list[IngestResult | Exception] = [Node.DoesNotExist(f"node {n} does not exist") for n, _ in items]
    nodes = {n.pk: n for n in Node.objects.select_for_update().filter(pk__in={n for n, _ in items}).order_by("pk")}
    by_node: dict[int, list[int]] = {}
    for i, (node_id, _) in enumerate(items):
        if node_id in nodes:
            by_node.setdefault(node_id, []).append(i)
    known: dict[int, dict[str, _KnownGpu]] = {n: {} for n in by_node}
    for pk, node_id, uuid, status, last_seen_at, *static in Gpu.objects.filter(node_id__in=list(by_node)).order_by() \
            .values_list("pk", "node_id", "uuid", "status", "last_seen_at", *STATIC_SYNC_FIELDS):
        known[node_id][uuid] = _KnownGpu(pk=pk, status=status, last_seen_at=last_seen_at, static=tuple(static))
    steady = {n for n, idx in by_node.items() if _unchanged(known[n], [items[i][1] for i in idx])}

    cutoff = raw_cutoff(now=now)
    rows_of: dict[int, list[SampleRow]] = {}
    one_by_one = 0
    for i, (node_id, report) in enumerate(items):  # in the order received: an older report never rolls back
        if node_id not in nodes or node_id in steady:
            continue
        one_by_one += 1
        try:
            with transaction.atomic():
                outcomes[i], rows_of[i] = _report_sync(node=nodes[node_id], report=report, now=now, cutoff=cutoff)
        except GpuOwnershipError as exc:
            outcomes[i] = exc
        except _db_errors() as exc:
            outcomes[i] = SampleRefusedError(f"the report could not be stored: {str(exc).splitlines()[0][:300]}")
    acc = _SteadyWrites()
    for node_id in sorted(steady):
        _steady_apply(node=nodes[node_id], gpus=known[node_id], indexed=[(i, items[i][1]) for i in by_node[node_id]],
                      now=now, cutoff=cutoff, outcomes=outcomes, rows_of=rows_of, acc=acc)
    acc.write(now=now)
    written = _samples_write(rows_of, outcomes)
    return _Applied(outcomes=outcomes, samples_written=written, synced_one_by_one=one_by_one)


def _unchanged(gpus: dict[str, _KnownGpu], reports: list[NodeReading]) -> bool:
    """True when every report only refreshes GPUs the node already has, with the same description, and none
    of the node's other GPUs would be flagged lost: then the inventory sync is a timestamp update."""
    for report in reports:
        if report.error or report.faults:
            return False
        uuids = {g.uuid for g in report.gpus}
        if len(uuids) != len(report.gpus):
            return False
        for reading in report.gpus:
            gpu = gpus.get(reading.uuid)
            if gpu is None or gpu.static != _static(reading, report):
                return False
        if report.complete and len(gpus) > len(uuids) and any(
                g.status != GpuStatus.LOST for u, g in gpus.items() if u not in uuids):
            return False
    return True


@dataclass
class _SteadyWrites:
    """What the steady nodes of a batch change, written as one statement per table."""

    # GPU id → (last_seen_at, last_util_pct, last_power_w) of its newest report in the batch
    gpu_seen: dict[int, LatestFigures] = dataclasses.field(default_factory=dict)
    migs: dict[str, MigDevice] = dataclasses.field(default_factory=dict)
    # node id → (last_seen_at, driver_version, cuda_driver_version, status)
    nodes: dict[int, tuple[dt.datetime, str, str, str]] = dataclasses.field(default_factory=dict)

    def write(self, *, now: dt.datetime) -> None:
        if self.gpu_seen:
            _gpus_refresh(self.gpu_seen, now=now)
        if self.migs:
            _mig_devices_upsert(list(self.migs.values()))
        if self.nodes:
            _nodes_refresh(self.nodes, now=now)


def _steady_apply(*, node: Node, gpus: dict[str, _KnownGpu], indexed: list[tuple[int, NodeReading]],
                  now: dt.datetime, cutoff: dt.datetime, outcomes: list, rows_of: dict[int, list[SampleRow]],
                  acc: _SteadyWrites) -> None:
    """What `_report_sync` does to an unchanged inventory, for all of a node's reports at once: replayed in
    the order received, in memory; the result goes to `acc`."""
    seen_at = node.last_seen_at
    driver, cuda = node.driver_version, node.cuda_driver_version
    newest = False
    for i, report in indexed:
        if seen_at is None or report.ts >= seen_at:
            seen_at, newest = report.ts, True
            driver = (report.driver_version or driver)[:32]
            cuda = (report.cuda_driver_version or cuda)[:32]
            for reading in report.gpus:
                gpu = gpus[reading.uuid]
                current = acc.gpu_seen[gpu.pk][0] if gpu.pk in acc.gpu_seen else gpu.last_seen_at
                if current is None or report.ts >= current:
                    acc.gpu_seen[gpu.pk] = _latest(reading, report.ts)
        for reading in report.gpus:
            for mig in _mig_devices(reading, gpu_id=gpus[reading.uuid].pk, ts=report.ts, now=now):
                acc.migs[mig.uuid] = mig  # the last one received wins, as when applied one by one
        rows_of[i] = [sample_row(gpu_id=gpus[r.uuid].pk, reading=r, source=report.source)
                      for r in report.gpus if r.ts >= cutoff]
    status = NodeStatus.ONLINE if newest and node.status in AUTOMATIC_NODE_STATUSES else node.status
    if newest:
        acc.nodes[node.pk] = (seen_at, driver, cuda, str(status))
        node.last_seen_at, node.last_error, node.status = seen_at, "", status
        node.driver_version, node.cuda_driver_version = driver, cuda
    for i, report in indexed:
        outcomes[i] = IngestResult(samples_refused=len(report.gpus) - len(rows_of[i]), node_status=status)


def _nodes_refresh(updates: dict[int, tuple[dt.datetime, str, str, str]], *, now: dt.datetime) -> None:
    """Nodes that reported: last_seen_at, versions, status; no fault, so no error (one statement on PostgreSQL)."""
    if connection.vendor == "postgresql":
        import psycopg

        seen, driver, cuda, status = (list(col) for col in zip(*updates.values(), strict=True))
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:  # arrays bound server-side
            cursor.execute(
                f"UPDATE {Node._meta.db_table} AS n SET last_seen_at = v.ts, last_error = '', driver_version = v.drv, "
                "cuda_driver_version = v.cuda, status = v.status, updated_at = %s FROM unnest(%s::bigint[], "
                "%s::timestamptz[], %s::text[], %s::text[], %s::text[]) AS v(id, ts, drv, cuda, status) "
                "WHERE n.id = v.id",
                [now, list(updates), seen, driver, cuda, status])
        return
    for pk, (seen_at, driver, cuda, status) in updates.items():
        Node.objects.filter(pk=pk).update(last_seen_at=seen_at, last_error="", driver_version=driver,
                                          cuda_driver_version=cuda, status=status, updated_at=now)


def _gpus_refresh(seen: dict[int, LatestFigures], *, now: dt.datetime) -> None:
    """GPUs seen again: ok, with their new last_seen_at and their newest reading's figures (one statement on
    PostgreSQL). The callers pass only reports that are the GPU's newest, so an older one never rolls them back."""
    if connection.vendor == "postgresql":
        import psycopg

        ts, util, power = (list(col) for col in zip(*seen.values(), strict=True))
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:  # arrays bound server-side
            cursor.execute(
                f"UPDATE {Gpu._meta.db_table} AS g SET status = %s, last_seen_at = v.ts, last_util_pct = v.util, "
                "last_power_w = v.power, last_error = '', updated_at = %s FROM unnest(%s::bigint[], "
                "%s::timestamptz[], %s::smallint[], %s::float8[]) AS v(id, ts, util, power) WHERE g.id = v.id",
                [str(GpuStatus.OK), now, list(seen), ts, util, power])
        return
    by_value: dict[LatestFigures, list[int]] = {}
    for pk, latest in seen.items():
        by_value.setdefault(latest, []).append(pk)
    for (ts, util, power), pks in by_value.items():
        Gpu.objects.filter(pk__in=pks).update(status=GpuStatus.OK, last_seen_at=ts, last_util_pct=util,
                                              last_power_w=power, last_error="", updated_at=now)


def _db_errors() -> tuple[type[Exception], ...]:
    """Errors that abort a statement: Django's, and psycopg's own from COPY and the raw cursors."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency; SQLite-only setups may lack it
        return (DatabaseError,)
    return (DatabaseError, psycopg.Error)


def _samples_write(rows_of: dict[int, list[SampleRow]], outcomes: list) -> int:
    """One COPY for the whole batch. Should the table refuse it (a value out of range), each report is
    written on its own so that only the offending one is refused."""
    unique: dict[tuple[int, dt.datetime], SampleRow] = {}
    for rows in rows_of.values():
        for row in rows:
            unique.setdefault((row[0], row[1]), row)  # the same report twice in one batch: stored once
    try:
        # On PostgreSQL the COPY has its savepoint already: a refused one leaves the transaction usable.
        with transaction.atomic() if connection.vendor != "postgresql" else contextlib.nullcontext():
            return gpu_samples_write(rows=list(unique.values()))
    except _db_errors():
        pass
    written = 0
    for i, rows in rows_of.items():
        try:
            with transaction.atomic():
                written += gpu_samples_write(rows=rows)
        except _db_errors() as exc:
            outcomes[i] = SampleRefusedError(f"the report's readings could not be stored: "
                                             f"{str(exc).splitlines()[0][:300]}")
    return written


def _report_sync(*, node: Node, report: NodeReading, now: dt.datetime,
                 cutoff: dt.datetime) -> tuple[IngestResult, list[SampleRow]]:
    """One report's inventory sync on a locked node (new GPUs, descriptions, faults, lost GPUs, the node
    itself); returns its result and its sample rows, which the caller writes. Raises GpuOwnershipError
    before writing anything when a GPU UUID belongs to another node."""
    newest = node.last_seen_at is None or report.ts >= node.last_seen_at
    if report.error:
        if newest and node.status in AUTOMATIC_NODE_STATUSES:
            node.status, node.last_error, node.last_seen_at = NodeStatus.UNHEALTHY, report.error[:2000], report.ts
            node.save(update_fields=["status", "last_error", "last_seen_at", "updated_at"])
        return IngestResult(node_status=node.status), []

    uuids = {g.uuid for g in report.gpus} | {f.uuid for f in report.faults if f.uuid}
    known = {g.uuid: g for g in Gpu.objects.filter(uuid__in=uuids)}
    foreign = sorted(u for u, g in known.items() if g.node_id != node.pk)
    if foreign:
        raise GpuOwnershipError(f"GPU {foreign[0]} is registered on another node; readings for it are refused.",
                                field="gpus")

    gpu_ids: dict[str, int] = {}
    refreshed: dict[int, LatestFigures] = {}
    # A GPU first seen in a simulated report is labelled simulated for good (UI/API badge). New GPUs are
    # inserted together: a node's first report (or a fleet's onboarding) is one statement, not eight.
    fresh = Gpu.objects.bulk_create([
        Gpu(node=node, uuid=r.uuid, simulated=report.source == SOURCE_SIMULATED, **_gpu_fields(r, report),
            **_latest_figures(r))
        for r in {r.uuid: r for r in report.gpus if r.uuid not in known}.values()])
    created = len(fresh)
    gpu_ids.update({g.uuid: g.pk for g in fresh})
    for reading in report.gpus:
        gpu = known.get(reading.uuid)
        if gpu is None:
            continue  # created above
        if newest and (gpu.last_seen_at is None or report.ts >= gpu.last_seen_at):
            # Most cycles change nothing but last_seen_at: one UPDATE for all of those below, a save
            # only for a GPU whose description changed (driver update, MIG reconfiguration...).
            fields = _gpu_fields(reading, report)
            changed = [k for k in STATIC_SYNC_FIELDS if getattr(gpu, k) != fields[k]]
            if changed:
                for key in changed:
                    setattr(gpu, key, fields[key])
                gpu.save(update_fields=[*changed, "updated_at"])
            refreshed[gpu.pk] = _latest(reading, report.ts)
        gpu_ids[reading.uuid] = gpu.pk
    if refreshed:
        _gpus_refresh(refreshed, now=now)
    _sync_mig_devices(report=report, gpu_ids=gpu_ids, now=now)

    lost = 0
    if newest:
        seen = set(gpu_ids.values())
        node_gpus = {g.index: g for g in Gpu.objects.filter(node=node).exclude(pk__in=seen)} if report.faults else {}
        by_uuid = {g.uuid: g for g in node_gpus.values()}
        for fault in report.faults:
            gpu = by_uuid.get(fault.uuid) if fault.uuid else node_gpus.get(fault.index)
            if gpu is None:
                continue
            seen.add(gpu.pk)
            status = GpuStatus.LOST if fault.lost else GpuStatus.UNHEALTHY
            lost += int(status == GpuStatus.LOST and gpu.status != GpuStatus.LOST)
            Gpu.objects.filter(pk=gpu.pk).update(status=status, last_error=fault.reason[:2000], updated_at=now)
        if report.complete:
            # Known GPUs that NVML no longer lists: flagged lost, never deleted (their history stays).
            lost += Gpu.objects.filter(node=node).exclude(pk__in=seen).exclude(status=GpuStatus.LOST).update(
                status=GpuStatus.LOST, last_error=f"not reported by the node since {report.ts:%Y-%m-%d %H:%M:%S}Z",
                updated_at=now)

    rows = [sample_row(gpu_id=gpu_ids[r.uuid], reading=r, source=report.source)
            for r in report.gpus if r.ts >= cutoff]

    if newest:
        node.last_seen_at = report.ts
        node.last_error = "; ".join(f"gpu{f.index}: {f.reason}" for f in report.faults)[:2000]
        node.driver_version = (report.driver_version or node.driver_version)[:32]
        node.cuda_driver_version = (report.cuda_driver_version or node.cuda_driver_version)[:32]
        if node.status in AUTOMATIC_NODE_STATUSES:
            node.status = NodeStatus.ONLINE
        node.save(update_fields=["last_seen_at", "last_error", "driver_version", "cuda_driver_version", "status",
                                 "updated_at"])
    return IngestResult(samples_refused=len(report.gpus) - len(rows), gpus_created=created, gpus_lost=lost,
                        node_status=node.status), rows


def _mig_devices(reading: GpuReading, *, gpu_id: int, ts: dt.datetime, now: dt.datetime) -> list[MigDevice]:
    return [MigDevice(gpu_id=gpu_id, uuid=m.uuid[:64], profile=m.profile[:32], memory_total_bytes=m.memory_total_bytes,
                      compute_slices=m.compute_slices or 1, last_seen_at=ts, created_at=now, updated_at=now)
            for m in reading.mig_devices]


def _mig_devices_upsert(devices: list[MigDevice]) -> None:
    # MIG devices that vanish (reconfiguration) keep their row; `last_seen_at` shows they are gone.
    MigDevice.objects.bulk_create(
        devices, update_conflicts=True, unique_fields=["uuid"],
        update_fields=["gpu", "profile", "memory_total_bytes", "compute_slices", "last_seen_at", "updated_at"],
    )


def _sync_mig_devices(*, report: NodeReading, gpu_ids: dict[str, int], now: dt.datetime) -> None:
    devices = [d for g in report.gpus for d in _mig_devices(g, gpu_id=gpu_ids[g.uuid], ts=report.ts, now=now)]
    if devices:
        _mig_devices_upsert(devices)


def gpu_nodes_mark_stale(*, now: dt.datetime) -> int:
    """Nodes with no report for 3 of their site's poll intervals become `stale`. Returns how many changed."""
    changed = 0
    for site_id, interval_s in Site.objects.values_list("pk", "gpu_poll_interval_s"):
        cutoff = now - dt.timedelta(seconds=STALE_AFTER_INTERVALS * interval_s)
        changed += Node.objects.filter(
            site_id=site_id, status__in=[NodeStatus.ONLINE, NodeStatus.UNHEALTHY], last_seen_at__lt=cutoff,
        ).update(status=NodeStatus.STALE, updated_at=now)
    return changed


@dataclass(frozen=True)
class PollOrder:
    """One node to poll now, how, and for how long the order stays worth running."""

    node_id: int
    hostname: str
    mode: str
    interval_s: int
    dcgm_url: str = ""
    # The node's GPUs are the demo's simulated ones: its worker reads the simulator instead of NVML.
    simulated: bool = False


POLLED_NODE_STATUSES = (NodeStatus.PENDING, NodeStatus.ONLINE, NodeStatus.STALE, NodeStatus.UNHEALTHY)


def gpu_polls_claim_due(*, now: dt.datetime) -> list[PollOrder]:
    """Claim the sites whose GPU poll is due (conditional UPDATE per site) and list their nodes.

    Running this twice at the same instant yields the orders once: the second run finds nothing due.
    """
    site_ids = list(Node.objects.filter(status__in=POLLED_NODE_STATUSES).values_list("site_id", flat=True).distinct())
    GpuPollClaim.objects.bulk_create([GpuPollClaim(site_id=s, next_due_at=now) for s in site_ids],
                                     ignore_conflicts=True)
    orders: list[PollOrder] = []
    intervals = dict(Site.objects.filter(pk__in=site_ids).values_list("pk", "gpu_poll_interval_s"))
    for claim in GpuPollClaim.objects.filter(site_id__in=site_ids, next_due_at__lte=now):
        interval = dt.timedelta(seconds=intervals[claim.site_id])
        # Keep the cadence; after a pause, start again from now rather than firing the backlog.
        next_due = claim.next_due_at + interval
        if next_due <= now:
            next_due = now + interval
        if GpuPollClaim.objects.filter(pk=claim.pk, next_due_at=claim.next_due_at).update(next_due_at=next_due) != 1:
            continue  # another scheduler claimed it
        collectors = {c.node_id: c for c in NodeGpuCollector.objects.filter(node__site_id=claim.site_id)}
        simulated = set(Gpu.objects.filter(node__site_id=claim.site_id, simulated=True)
                        .values_list("node_id", flat=True).distinct())
        for node_id, hostname in Node.objects.filter(site_id=claim.site_id, status__in=POLLED_NODE_STATUSES) \
                .values_list("pk", "hostname"):
            collector = collectors.get(node_id)
            mode = collector.mode if collector else GpuCollectorMode.NVML_WORKER
            if mode == GpuCollectorMode.AGENT:
                continue  # the agent pushes; nothing to poll
            orders.append(PollOrder(node_id=node_id, hostname=hostname, mode=mode, interval_s=intervals[claim.site_id],
                                    dcgm_url=collector.dcgm_url if collector else "", simulated=node_id in simulated))
    return orders


def node_agent_token_issue(*, node: Node) -> str:
    """A new push token for the node's agent (any previous one stops working). Only its hash is stored."""
    return node_issue_agent_token(node=node)


def node_gpu_collector_set(*, node: Node, mode: str, dcgm_url: str = "") -> NodeGpuCollector:
    """Choose how the node's GPUs are read (NVML worker, dcgm-exporter, or pushing agent)."""
    collector = NodeGpuCollector.objects.filter(node=node).first() or NodeGpuCollector(node=node)
    collector.mode, collector.dcgm_url = mode, dcgm_url
    collector.full_clean()
    collector.save()
    return collector


def gpu_node_poll(*, node_id: int, hostname: str, simulated: bool = False, ordered_at: str | None = None,
                  window_s: float | None = None) -> dict:
    """On the GPU node: read NVML once (this process's reader) and send the report to the `ingest` queue.
    Touches no database: a node worker needs only the broker. A simulated (demo) node is read from the
    simulator behind the same reader interface, its report labelled `source="sim"`. The order's central
    timestamp (`ordered_at`, `window_s`) travels on with the report: the ingest measures the node's clock by it.

    A poll older than its window (a backlog: the worker was down or busy) is dropped, not run: each would read
    *now* and stand for a past slot. Its age is judged by the broker's clock, not the node's, so a node whose
    clock runs minutes ahead still runs its polls (and the ingest measures and corrects the offset)."""
    from telemetry.clock import central_now, poll_order_age_s
    from telemetry.collectors.nvml import get_reader, reading_to_dict
    from telemetry.tasks.gpu import gpu_report_ingest_task

    if ordered_at and window_s:
        age_s = poll_order_age_s(ordered_at=ordered_at, now=central_now())
        if age_s > window_s:
            return {"node": hostname, "skipped": f"ordered {age_s:.1f} s ago, past its {window_s:g} s window"}
    reading = _simulated_reading(hostname) if simulated else get_reader().read()
    clock = {"ordered_at": ordered_at, "window_s": window_s} if ordered_at else {}
    gpu_report_ingest_task.apply_async(args=[node_id, reading_to_dict(reading)], kwargs=clock, queue=INGEST_QUEUE)
    return {"node": hostname, "gpus": len(reading.gpus), "faults": len(reading.faults), "error": reading.error}


def _simulated_reading(hostname: str) -> NodeReading:
    from telemetry.simulator.gpus import simulated_reader

    reader = simulated_reader(hostname)
    if reader is None:
        return NodeReading(hostname=hostname, ts=timezone.now(), source=SOURCE_SIMULATED, complete=False,
                           error=f"no simulated GPUs are defined for node {hostname}")
    return reader.read()


def gpu_dcgm_poll(*, node_id: int) -> dict:
    """Central (queue `scrape`): read the node's dcgm-exporter page and send the report to `ingest`."""
    from telemetry.collectors.dcgm import read_dcgm
    from telemetry.collectors.nvml import reading_to_dict
    from telemetry.tasks.gpu import gpu_report_ingest_task

    collector = NodeGpuCollector.objects.select_related("node").filter(node_id=node_id).first()
    if collector is None or collector.mode != GpuCollectorMode.DCGM:
        return {"skipped": "node is not in dcgm mode"}
    reading = read_dcgm(collector.dcgm_url, ts=timezone.now(), hostname=collector.node.hostname)
    gpu_report_ingest_task.apply_async(args=[node_id, reading_to_dict(reading)], queue=INGEST_QUEUE)
    return {"node": collector.node.hostname, "gpus": len(reading.gpus), "error": reading.error}


INGEST_QUEUE = "ingest"
SCRAPE_QUEUE = "scrape"


# How far ahead a node's clock may run and still receive its polls (see poll_route). A clock off by more than an
# hour also breaks TLS to the broker; such a node goes stale and is alerted.
NODE_CLOCK_AHEAD_MAX_S = 3600


def poll_route(order: PollOrder) -> dict:
    """apply_async options of a poll: its queue and `expires`. A dcgm poll runs centrally and expires after one
    interval, so a backlog is dropped. An NVML poll runs on the node, and Celery compares `expires` with the
    node's own clock: with one interval, a clock ahead by more than that would drop every poll. So its `expires`
    allows a clock up to NODE_CLOCK_AHEAD_MAX_S ahead, and `gpu_node_poll` drops a backlog by the broker's clock."""
    from factory_portal.celery import node_queue

    if order.mode == GpuCollectorMode.NVML_WORKER:
        return {"queue": node_queue(order.hostname), "expires": order.interval_s + NODE_CLOCK_AHEAD_MAX_S}
    return {"queue": SCRAPE_QUEUE, "expires": order.interval_s}


def poll_message(order: PollOrder) -> tuple[str, list, dict, dict]:
    """What the scheduler sends for one order: (task name, args, kwargs, apply_async options)."""
    from telemetry.clock import poll_order_clock
    from telemetry.tasks.gpu import gpu_dcgm_poll_task, gpu_node_poll_task

    if order.mode == GpuCollectorMode.NVML_WORKER:
        kwargs = {"simulated": True} if order.simulated else {}
        kwargs |= poll_order_clock(window_s=order.interval_s)
        return gpu_node_poll_task.name, [order.node_id, order.hostname], kwargs, poll_route(order)
    return gpu_dcgm_poll_task.name, [order.node_id], {}, poll_route(order)


def gpu_polls_schedule(*, now: dt.datetime) -> list[PollOrder]:
    """Claim due sites and enqueue one poll per node (after commit): NVML polls to `node.<hostname>`,
    dcgm polls to `scrape`."""
    from celery import current_app

    orders = gpu_polls_claim_due(now=now)

    def send() -> None:
        for order in orders:
            name, args, kwargs, options = poll_message(order)
            current_app.tasks[name].apply_async(args=args, kwargs=kwargs, **options)

    transaction.on_commit(send)
    return orders


def gpu_reports_ingest_safely(*, reports: Sequence[QueuedReport]) -> dict:
    """The ingest task's body: a batch of queued reports; refusals are counted and noted, never raised."""
    result = gpu_reports_ingest(reports=reports)
    return {"reports": result.reports, "samples_written": result.samples_written,
            "synced_one_by_one": result.synced_one_by_one, "refused": list(result.refused)}
