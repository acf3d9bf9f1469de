"""A GPU node's Celery worker whose clock is off by a fixed number of seconds, for the clock-skew test.

    python -m tests.reliability.skewed_node <skew_s> -A factory_portal.celery worker -Q node.<hostname> ...

The whole process (and its forked pool children) sees the true time plus `skew_s` (time_machine, ticking), as a
machine whose clock is wrong does; Redis and the portal keep the true time. NVML is the only fake, at the pynvml
boundary (`GPU_READER_FACTORY=tests.reliability.skewed_node:reader`): two H100s whose energy counters advance in
real time.
"""

from __future__ import annotations

import datetime as dt
import sys
import time


def reader():
    """Two fake H100s behind the real NvmlReader; before each read the fake advances by the real time elapsed."""
    from telemetry.collectors.nvml import NvmlReader
    from tests.telemetry.fake_pynvml import FakeNvml, h100

    nvml = FakeNvml([h100(0), h100(1)])
    base = NvmlReader(nvml, hostname="node-a")
    last = [time.monotonic()]

    class AdvancingReader:
        def read(self):
            now = time.monotonic()
            nvml.advance(now - last[0])
            last[0] = now
            return base.read()

    return AdvancingReader()


def main() -> None:
    import time_machine

    skew_s = float(sys.argv[1])
    time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=skew_s), tick=True).start()
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *sys.argv[2:]]
    celery_main()


if __name__ == "__main__":
    main()
