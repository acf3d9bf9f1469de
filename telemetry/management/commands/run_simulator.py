"""`python manage.py run_simulator`: serve the demo's SIMULATED engines on 127.0.0.1 until stopped.

The portal's real scraper polls these pages over HTTP (the endpoints `seed_demo` registers point here). The
simulated GPUs need no process of their own: the worker's node polls read them (telemetry/simulator/gpus.py).
"""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand, CommandError

from telemetry.simulator.demo import demo_fleet, engine_port


class Command(BaseCommand):
    help = "Serve the demo's simulated engines (vLLM, SGLang, TGI) on 127.0.0.1:DEMO_ENGINE_PORT (default 9400)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=None, help="default: DEMO_ENGINE_PORT or 9400")

    def handle(self, *args, **options) -> None:
        port = options["port"] if options["port"] is not None else engine_port()
        try:
            fleet = demo_fleet(port=port)
        except OSError as exc:
            raise CommandError(f"cannot listen on 127.0.0.1:{port} ({exc}); set DEMO_ENGINE_PORT to a free port "
                               "(and seed the demo with the same value)") from exc
        # SIGTERM (from `make run`'s Ctrl-C handling, or a test) ends serve_forever like Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        names = ", ".join(f"{name} ({engine.kind})" for name, engine in fleet.engines.items())
        self.stdout.write(f"SIMULATED engines on http://127.0.0.1:{fleet.port}/<name>/metrics: {names}", ending="\n")
        self.stdout.flush()
        try:
            fleet.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            fleet.server.server_close()
