"""`python manage.py gpu_agent --portal URL --token T`: read NVML every interval and push to the portal.

For nodes that cannot reach the broker. Reports that could not be delivered (network, portal down) are
kept (up to --buffer) and sent oldest first on the next cycle; a report the portal refuses as malformed
(400) is dropped, and a refused token (401/403) stops the agent.
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from urllib.parse import urlsplit

import httpx
from django.core.management.base import BaseCommand, CommandError

from telemetry.collectors.nvml import get_reader, reading_to_dict

INGEST_PATH = "/api/v1/ingest/gpu-readings/"


class Command(BaseCommand):
    help = "Loop: read the local GPUs through NVML and push the readings to the portal with the node token."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--portal", required=True, help="portal base URL, e.g. https://portal.example.com")
        parser.add_argument("--token", required=True, help="the node's agent token (fpn_...)")
        parser.add_argument("--interval", type=float, default=10.0, help="seconds between reads (default 10)")
        parser.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds")
        parser.add_argument("--buffer", type=int, default=360, help="undelivered reports kept (default 360)")
        parser.add_argument("--once", action="store_true", help="read and push once, then exit")
        parser.add_argument("--cycles", type=int, default=0, help="stop after this many cycles (0 = forever)")

    def handle(self, *args, **options) -> None:
        parts = urlsplit(options["portal"])
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise CommandError("--portal must be an http:// or https:// URL")
        if options["interval"] <= 0:
            raise CommandError("--interval must be positive")
        url = options["portal"].rstrip("/") + INGEST_PATH
        headers = {"Authorization": f"Bearer {options['token']}"}
        pending: collections.deque[dict] = collections.deque(maxlen=max(1, options["buffer"]))
        cycles = 1 if options["once"] else options["cycles"]
        done = 0
        reader = get_reader()
        with httpx.Client(timeout=options["timeout"], headers=headers) as client:
            while True:
                started = time.monotonic()
                reading = reader.read()
                if reading.error:
                    self.stderr.write(reading.error)
                pending.append(reading_to_dict(reading))
                self._flush(client, url, pending)
                done += 1
                if cycles and done >= cycles:
                    break
                time.sleep(max(0.0, options["interval"] - (time.monotonic() - started)))
        if pending:
            raise CommandError(f"{len(pending)} report(s) could not be delivered to {url}")

    def _flush(self, client: httpx.Client, url: str, pending: collections.deque) -> None:
        while pending:
            try:
                # sent_at: this node's clock as it sends, so the portal can measure the clock's offset even for
                # a report kept through an outage (telemetry/clock.py).
                response = client.post(url, json={**pending[0], "sent_at": dt.datetime.now(dt.UTC).isoformat()})
            except httpx.HTTPError as exc:
                self.stderr.write(f"portal unreachable ({exc}); {len(pending)} report(s) kept for the next cycle")
                return
            if response.status_code in (401, 403):
                raise CommandError(f"portal refused the node token: HTTP {response.status_code} {response.text[:300]}")
            if response.status_code == 400:
                self.stderr.write(f"portal refused a report as malformed, dropped: {response.text[:500]}")
                pending.popleft()
                continue
            if response.status_code >= 300:
                self.stderr.write(f"portal answered HTTP {response.status_code}; report kept for the next cycle")
                return
            pending.popleft()
            self.stdout.write(f"pushed: {response.text[:200]}")
