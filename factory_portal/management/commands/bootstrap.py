"""First-run setup for `make run`: an administrator account on an empty database, the demo on an empty
database (unless DEMO=0), the local node when this machine has GPUs NVML can read, and how to log in.

`bootstrap --worker-queues` prints the queues `make run`'s worker must consume: the central ones, this
machine's node queue, and the node queue of every simulated demo node (their polls run in that worker)."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from factory_portal.celery import CENTRAL_QUEUES, node_queue


def _demo_enabled() -> bool:
    return os.environ.get("DEMO", "1").strip().lower() not in {"0", "false", "no", "off"}


class Command(BaseCommand):
    help = "Create the first administrator (and the demo, unless DEMO=0) on an empty database; print how to log in."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--worker-queues", action="store_true",
                            help="only print the comma-separated queues the local worker must consume")

    def handle(self, *args, **options) -> None:
        if options["worker_queues"]:
            self.stdout.write(",".join(self.worker_queues()))
            return
        users = get_user_model().objects
        port = os.environ.get("PORT", "8000")
        empty = not users.exists()
        if empty:
            password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            users.create_superuser(username="admin", email="admin@localhost", password=password)
            self.stdout.write(f"Created the platform administrator: username admin, password {password}")
            self.stdout.write("(printed once; set ADMIN_PASSWORD to choose it). Django admin: /admin/")
            if _demo_enabled():
                self.stdout.write("Seeding the SIMULATED demo factory (DEMO=0 skips this)...")
                call_command("seed_demo", stdout=self.stdout, stderr=self.stderr)
        self._register_local_node()
        if not empty:
            self.stdout.write(f"Log in at http://127.0.0.1:{port}/accounts/login/ with an existing account.")

    def _register_local_node(self) -> None:
        from telemetry.simulator.seed import local_node_register

        node = local_node_register()
        if node is not None:
            self.stdout.write(f"NVML sees GPUs on this machine: registered node {node.hostname} (real readings) at "
                              f"site '{node.site.name}'.")

    @staticmethod
    def worker_queues() -> list[str]:
        from sites.models import Gpu
        from telemetry.simulator.seed import local_hostname

        queues = [*CENTRAL_QUEUES, node_queue(local_hostname())]
        simulated = Gpu.objects.filter(simulated=True).values_list("node__hostname", flat=True).distinct()
        queues += sorted({node_queue(hostname) for hostname in simulated} - set(queues))
        return queues
