"""`python -m tests.reliability.rss_fetch PORT N LIMIT`: in a fresh process, fetch N oversized pages at once
with the portal's fetcher and print JSON {errors, peak_rss_growth_mib, elapsed_s} (RSS from /proc/self/status)."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from telemetry.collectors.fetch import FetchPolicy, FetchTarget, fetch_many
from tests.reliability.engines import peak_rss_reset, rss_kib


def main(port: int, concurrent: int, limit: int) -> dict:
    policy = FetchPolicy(timeout_s=5, max_bytes=limit, allow_private=True, allow_loopback=True)
    targets = [FetchTarget(key=i, url=f"http://127.0.0.1:{port}/{('huge', 'endless')[i % 2]}/metrics")
               for i in range(concurrent)]
    asyncio.run(fetch_many([FetchTarget(key=0, url=f"http://127.0.0.1:{port}/none/metrics")], policy))  # warm up
    before = rss_kib("VmRSS")
    peak_rss_reset()
    started = time.monotonic()
    results = asyncio.run(fetch_many(targets, policy))
    return {"errors": sorted({r.error or "" for r in results}), "elapsed_s": round(time.monotonic() - started, 2),
            "peak_rss_growth_mib": round((rss_kib("VmHWM") - before) / 1024, 1)}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
