"""`manage.py poll_endpoints --once`: poll every enabled endpoint once, synchronously, and store the result."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sites.models import ServingEndpoint
from telemetry import metering_services


class Command(BaseCommand):
    help = "Poll every enabled serving endpoint once (no Celery) and record snapshots, deltas and health."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="poll once and exit (the only mode)")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, once: bool, batch_size: int, **options) -> None:
        if not once:
            raise CommandError("use --once (the periodic poller is Celery beat: endpoints_scrape_schedule_task)")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        ids = list(ServingEndpoint.objects.filter(enabled=True).order_by("pk").values_list("pk", flat=True))
        healthy = deltas = 0
        for i in range(0, len(ids), batch_size):
            summary = metering_services.endpoints_scrape(endpoint_ids=ids[i:i + batch_size])
            healthy += summary.healthy
            deltas += summary.deltas
            for endpoint_id, error in summary.errors.items():
                self.stderr.write(f"endpoint {endpoint_id}: {error}")
        self.stdout.write(f"polled {len(ids)} endpoints: {healthy} healthy, {len(ids) - healthy} unhealthy, "
                          f"{deltas} usage deltas")
