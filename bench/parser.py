"""Parser benchmark: every fixture parsed N times with telemetry.parsing and with prometheus_client, same run.

    .venv/bin/python bench/parser.py [--n 2000] [--runs 3]

Modes: `full` = every sample; `targeted` = only the names the page's engine adapter maps (what the poller
does); `normalize` = targeted parse plus the adapter's mapping to normalized series. Prints the median of
`--runs` runs per fixture and the ratio prometheus_client time ÷ our time.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from telemetry.collectors.engines import ADAPTERS, detect_engine, normalize  # noqa: E402
from telemetry.parsing import parse  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures"


def timed(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    files = sorted([*FIXTURES.glob("engines/*.prom"), *FIXTURES.glob("dcgm/*.prom")])
    if not files:
        sys.exit(f"no fixtures under {FIXTURES}")
    print(f"# {platform.machine()} {platform.processor() or ''} Python {platform.python_version()}, "
          f"n={args.n}, median of {args.runs} runs; times are µs per parse")
    print(f"{'fixture':58} {'bytes':>6} {'prom_client':>11} {'full':>8} {'x':>6} {'targeted':>8} {'x':>6} "
          f"{'normalize':>9} {'x':>6}")
    totals = {"pc": 0.0, "full": 0.0, "targeted": 0.0, "normalize": 0.0}
    for path in files:
        text = path.read_text()
        engine = detect_engine(text)
        names = ADAPTERS[engine].names if engine else frozenset({"DCGM_FI_DEV_POWER_USAGE",
                                                                 "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                                                                 "DCGM_FI_DEV_GPU_UTIL"})
        modes = {
            "pc": lambda t=text: list(text_string_to_metric_families(t)),
            "full": lambda t=text: parse(t),
            "targeted": lambda t=text, s=names: parse(t, names=s),
            "normalize": (lambda t=text, e=engine: normalize(t, engine=e)) if engine else None,
        }
        medians = {}
        for mode, fn in modes.items():
            if fn is None:
                continue
            medians[mode] = statistics.median(timed(fn, args.n) for _ in range(args.runs))
            totals[mode] += medians[mode]
        us = {k: v / args.n * 1e6 for k, v in medians.items()}
        norm = (f"{us['normalize']:9.1f} {medians['pc'] / medians['normalize']:5.1f}x" if "normalize" in us
                else f"{'-':>9} {'-':>6}")
        print(f"{path.name[:58]:58} {len(text):6} {us['pc']:11.1f} {us['full']:8.1f} "
              f"{medians['pc'] / medians['full']:5.1f}x {us['targeted']:8.1f} "
              f"{medians['pc'] / medians['targeted']:5.1f}x {norm}")
    print(f"{'ALL (sum of medians)':58} {'':6} {'':11} {'':8} {totals['pc'] / totals['full']:5.1f}x {'':8} "
          f"{totals['pc'] / totals['targeted']:5.1f}x")


if __name__ == "__main__":
    main()
