"""`python manage.py seed_demo`: the SIMULATED demo factory (see docs/demo.md). Idempotent."""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand

from telemetry.simulator.seed import HISTORY_DAYS, demo_seed


class Command(BaseCommand):
    help = ("Seed the demo partner 'Demo Capital' with simulated GPUs, engines, tenants and a month of history. "
            "Running it again adds nothing.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=HISTORY_DAYS, help="days of back-filled history")

    def handle(self, *args, **options) -> None:
        chosen = os.environ.get("DEMO_PASSWORD") or None
        result = demo_seed(password=chosen, days=options["days"], log=self.stdout.write)
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        if result.backfilled:
            self.stdout.write(f"History: {result.gpu_samples} GPU samples, {result.usage_deltas} usage deltas "
                              f"({', '.join(f'{k} {v} s' for k, v in result.timings_s.items())}).")
        else:
            self.stdout.write("The demo was already seeded: nothing added.")
        if result.new_logins:
            password = next(iter(result.new_logins.values()))
            self.stdout.write("Demo logins (SIMULATED data; see docs/demo.md): " + ", ".join(result.new_logins))
            if chosen:
                self.stdout.write("Password: the value of DEMO_PASSWORD.")
            else:
                self.stdout.write(f"Password: {password}   (generated, printed once; set DEMO_PASSWORD to choose it)")
