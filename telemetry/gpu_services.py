"""Writes of GPU telemetry: ingest a node's report (inventory sync + raw samples), staleness, poll
scheduling, agent tokens and collector settings. Tasks and the API are thin wrappers around these."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from factory_portal.exceptions import ServiceError
from sites.choices import GpuStatus, NodeStatus
from sites.models import Gpu, MigDevice, Node, Site
from sites.services import node_issue_agent_token
from telemetry.collectors.nvml import SOURCE_SIMULATED, GpuReading, NodeReading
from telemetry.ingest import gpu_samples_write, sample_row
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
    node = Node.objects.select_for_update().get(pk=node_id)
    newest = node.last_seen_at is None or report.ts >= node.last_seen_at
    if report.error:
        if newest and node.status in AUTOMATIC_NODE_STATUSES:
            node.status, node.last_error, node.last_seen_at = NodeStatus.UNHEALTHY, report.error[:2000], report.ts
            node.save(update_fields=["status", "last_error", "last_seen_at", "updated_at"])
        return IngestResult(node_status=node.status)

    uuids = {g.uuid for g in report.gpus} | {f.uuid for f in report.faults if f.uuid}
    known = {g.uuid: g for g in Gpu.objects.filter(uuid__in=uuids)}
    foreign = sorted(u for u, g in known.items() if g.node_id != node.pk)
    if foreign:
        raise GpuOwnershipError(f"GPU {foreign[0]} is registered on another node; readings for it are refused.",
                                field="gpus")

    gpu_ids: dict[str, int] = {}
    created = 0
    refreshed: list[int] = []
    for reading in report.gpus:
        gpu = known.get(reading.uuid)
        fields = _gpu_fields(reading, report)
        if gpu is None:
            # A GPU first seen in a simulated report is labelled simulated for good (UI/API badge).
            gpu = Gpu.objects.create(node=node, uuid=reading.uuid, simulated=report.source == SOURCE_SIMULATED,
                                     **fields)
            created += 1
        elif newest and (gpu.last_seen_at is None or report.ts >= gpu.last_seen_at):
            # Most cycles change nothing but last_seen_at: one UPDATE for all of those below, a save
            # only for a GPU whose description changed (driver update, MIG reconfiguration...).
            changed = [k for k in STATIC_SYNC_FIELDS if getattr(gpu, k) != fields[k]]
            if changed:
                for key in changed:
                    setattr(gpu, key, fields[key])
                gpu.save(update_fields=[*changed, "updated_at"])
            refreshed.append(gpu.pk)
        gpu_ids[reading.uuid] = gpu.pk
    if refreshed:
        Gpu.objects.filter(pk__in=refreshed).update(status=GpuStatus.OK, last_seen_at=report.ts, last_error="",
                                                    updated_at=now)
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

    cutoff = raw_cutoff(now=now)
    rows = [sample_row(gpu_id=gpu_ids[r.uuid], reading=r, source=report.source)
            for r in report.gpus if r.ts >= cutoff]
    written = gpu_samples_write(rows=rows)

    if newest:
        node.last_seen_at = report.ts
        node.last_error = "; ".join(f"gpu{f.index}: {f.reason}" for f in report.faults)[:2000]
        node.driver_version = (report.driver_version or node.driver_version)[:32]
        node.cuda_driver_version = (report.cuda_driver_version or node.cuda_driver_version)[:32]
        if node.status in AUTOMATIC_NODE_STATUSES:
            node.status = NodeStatus.ONLINE
        node.save(update_fields=["last_seen_at", "last_error", "driver_version", "cuda_driver_version", "status",
                                 "updated_at"])
    return IngestResult(samples_written=written, samples_refused=len(report.gpus) - len(rows), gpus_created=created,
                        gpus_lost=lost, node_status=node.status)


def _sync_mig_devices(*, report: NodeReading, gpu_ids: dict[str, int], now: dt.datetime) -> None:
    devices = [
        MigDevice(gpu_id=gpu_ids[g.uuid], uuid=m.uuid[:64], profile=m.profile[:32],
                  memory_total_bytes=m.memory_total_bytes, compute_slices=m.compute_slices or 1,
                  last_seen_at=report.ts, created_at=now, updated_at=now)
        for g in report.gpus for m in g.mig_devices
    ]
    if devices:
        # MIG devices that vanish (reconfiguration) keep their row; `last_seen_at` shows they are gone.
        MigDevice.objects.bulk_create(
            devices, update_conflicts=True, unique_fields=["uuid"],
            update_fields=["gpu", "profile", "memory_total_bytes", "compute_slices", "last_seen_at", "updated_at"],
        )


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
    timestamp (`ordered_at`, `window_s`) travels on with the report: the ingest measures the node's clock by it."""
    from telemetry.collectors.nvml import get_reader, reading_to_dict
    from telemetry.tasks.gpu import gpu_report_ingest_task

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


def poll_route(order: PollOrder) -> dict:
    """apply_async options of a poll: its queue, and `expires` ≈ the interval so a backlog is dropped."""
    from factory_portal.celery import node_queue

    queue = node_queue(order.hostname) if order.mode == GpuCollectorMode.NVML_WORKER else SCRAPE_QUEUE
    return {"queue": queue, "expires": order.interval_s}


def gpu_polls_schedule(*, now: dt.datetime) -> list[PollOrder]:
    """Claim due sites and enqueue one poll per node (after commit): NVML polls to `node.<hostname>`,
    dcgm polls to `scrape`."""
    from telemetry.clock import poll_order_clock
    from telemetry.tasks.gpu import gpu_dcgm_poll_task, gpu_node_poll_task

    orders = gpu_polls_claim_due(now=now)

    def send() -> None:
        for order in orders:
            if order.mode == GpuCollectorMode.NVML_WORKER:
                kwargs = {"simulated": True} if order.simulated else {}
                kwargs |= poll_order_clock(window_s=poll_route(order)["expires"])
                gpu_node_poll_task.apply_async(args=[order.node_id, order.hostname], kwargs=kwargs,
                                               **poll_route(order))
            else:
                gpu_dcgm_poll_task.apply_async(args=[order.node_id], **poll_route(order))

    transaction.on_commit(send)
    return orders


def gpu_report_ingest_safely(*, node_id: int, payload: dict, ordered_at: str | None = None,
                             window_s: float | None = None) -> dict:
    """The ingest task's body: a report naming another node's GPU is refused and noted on the node.
    The report is put on the server's clock first (telemetry/clock.py), by the poll order's timestamp if any."""
    from telemetry.clock import node_report_from_queue

    report = node_report_from_queue(node_id=node_id, payload=payload, ordered_at=ordered_at, window_s=window_s)
    try:
        result = gpu_report_ingest(node_id=node_id, report=report)
    except GpuOwnershipError as exc:
        Node.objects.filter(pk=node_id).update(last_error=exc.message[:2000], updated_at=timezone.now())
        return {"refused": exc.message}
    except Node.DoesNotExist:
        return {"refused": f"node {node_id} does not exist"}
    return {"samples_written": result.samples_written, "gpus_created": result.gpus_created,
            "gpus_lost": result.gpus_lost, "node_status": result.node_status}
