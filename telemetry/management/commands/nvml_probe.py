"""`python manage.py nvml_probe [--json]`: read every local GPU once through NVML and print it."""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from telemetry.collectors.nvml import GpuReading, get_reader, probe_dict


def _fmt(value, unit: str, reading: GpuReading, field: str) -> str:
    if value is None:
        return f"n/a ({reading.absent.get(field, 'not reported')})"
    return f"{value:g} {unit}".strip() if isinstance(value, float) else f"{value} {unit}".strip()


class Command(BaseCommand):
    help = "Read every local GPU once through NVML and print it (--json: machine-readable)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print the JSON document of issue 3")

    def handle(self, *args, **options) -> None:
        started = time.perf_counter()
        reading = get_reader().read()
        elapsed = time.perf_counter() - started
        if reading.error:
            # One line on stderr and a non-zero exit (CommandError prints no traceback).
            raise CommandError(reading.error)
        for fault in reading.faults:
            self.stderr.write(f"gpu{fault.index} {fault.uuid or ''} could not be read: {fault.reason}")
        if options["json"]:
            self.stdout.write(json.dumps(probe_dict(reading), indent=2))
            return
        self.stdout.write(f"driver {reading.driver_version}  CUDA {reading.cuda_driver_version}  "
                          f"{len(reading.gpus)} GPU(s) read in {elapsed * 1000:.1f} ms")
        for g in reading.gpus:
            energy = g.energy_mj / 1000 if g.energy_mj is not None else None
            self.stdout.write(
                f"gpu{g.index} {g.name} {g.uuid}\n"
                f"  util {_fmt(g.util_pct, '%', g, 'util_pct')}"
                f"  memory {_fmt(g.memory_used_bytes, 'B', g, 'memory_used_bytes')}"
                f" / {_fmt(g.memory_total_bytes, 'B', g, 'memory_total_bytes')}\n"
                f"  power {_fmt(g.power_w, 'W', g, 'power_w')}  energy {_fmt(energy, 'J', g, 'energy_mj')}"
                f"  temperature {_fmt(g.temperature_c, 'C', g, 'temperature_c')}"
                f"  SM clock {_fmt(g.sm_clock_mhz, 'MHz', g, 'sm_clock_mhz')}\n"
                f"  MIG {_fmt(g.mig_mode, '', g, 'mig_mode')}"
                + "".join(f"\n    {m.profile} {m.uuid}" for m in g.mig_devices)
            )
