"""Django work on a test's private database, run as a subprocess with its own DATABASE_URL (the test process
itself stays on the suite's database): `python -m tests.reliability.private_db_ops setup METRICS_URL` creates the
inventory, `... totals` runs the rollups (twice) and prints what was counted. Both print one JSON line."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

import django


def setup(metrics_url: str) -> dict:
    from django.utils import timezone

    from telemetry.retention import gpu_sample_partitions_ensure_ahead
    from tests import factories

    node = factories.NodeFactory(hostname="node-pg")
    endpoint = factories.ServingEndpointFactory(site=node.site, metrics_url=metrics_url)

    # From yesterday on, so that readings stamped just before midnight find their partition too, and the
    # ingest blocks (when the test locks the table) in its write, not in creating a partition.
    gpu_sample_partitions_ensure_ahead(today=(timezone.now() - dt.timedelta(days=1)).date())
    return {"node_id": node.pk, "endpoint_id": endpoint.pk}


def totals(endpoint_id: int) -> dict:
    from django.db.models import Count, Sum
    from django.utils import timezone

    from sites.models import Gpu
    from telemetry.metering_services import usage_rollup
    from telemetry.models import GpuRollup1h, GpuRollup1m, GpuSample
    from telemetry.models.metering import CounterSnapshot, UsageDelta, UsageRollup
    from telemetry.rollups import gpu_rollups_run

    now = timezone.now()
    for _ in range(2):  # twice: the second run must change nothing
        gpu_rollups_run(now=now)
        usage_rollup()
    deltas = UsageDelta.objects.filter(endpoint_id=endpoint_id).aggregate(
        p=Sum("prompt_tokens"), g=Sum("generation_tokens"), n=Count("id"))
    hourly = UsageRollup.objects.filter(endpoint_id=endpoint_id, bucket="hour").aggregate(
        p=Sum("prompt_tokens"), g=Sum("generation_tokens"))
    daily = UsageRollup.objects.filter(endpoint_id=endpoint_id, bucket="day").aggregate(
        p=Sum("prompt_tokens"), g=Sum("generation_tokens"))
    energy = {}
    for gpu in Gpu.objects.order_by("uuid"):
        energy[gpu.uuid] = {
            "minute_j": str(GpuRollup1m.objects.filter(gpu=gpu).aggregate(e=Sum("energy_j"))["e"]),
            "hour_j": str(GpuRollup1h.objects.filter(gpu=gpu).aggregate(e=Sum("energy_j"))["e"]),
            "samples": GpuSample.objects.filter(gpu=gpu).count(),
        }
    return {
        "tokens_deltas": [deltas["p"], deltas["g"]], "deltas": deltas["n"],
        "tokens_hourly": [hourly["p"], hourly["g"]], "tokens_daily": [daily["p"], daily["g"]],
        "snapshots": CounterSnapshot.objects.filter(series__endpoint_id=endpoint_id).count(),
        "energy": energy,
        "samples": GpuSample.objects.count(),
        "distinct_samples": GpuSample.objects.values("gpu", "ts").distinct().count(),
    }


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "factory_portal.settings")
    django.setup()
    command, arg = argv[1], argv[2]
    result = setup(arg) if command == "setup" else totals(int(arg))
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv)
