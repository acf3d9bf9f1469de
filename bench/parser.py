"""Parser benchmark: every fixture parsed N times with telemetry.parsing and with prometheus_client, same run.

    .venv/bin/python bench/parser.py [--n 2000] [--runs 3]

Modes: `full` = every sample; `targeted` = only the names the page's engine adapter maps (what the poller
does); `normalize` = targeted parse plus the adapter's mapping to normalized series. Prints one markdown section
(bench/run_all.py): the median of `--runs` runs per fixture and the ratio prometheus_client time ÷ our time.
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
    rows = []
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
        norm = (f"{us['normalize']:.1f} | {medians['pc'] / medians['normalize']:.1f}×" if "normalize" in us
                else "– | –")
        rows.append(f"| {path.name} | {len(text)} | {us['pc']:.1f} | {us['full']:.1f} | "
                    f"{medians['pc'] / medians['full']:.1f}× | {us['targeted']:.1f} | "
                    f"{medians['pc'] / medians['targeted']:.1f}× | {norm} |")
    print("## Parser vs prometheus_client (`bench/parser.py`)")
    print()
    print(f"Every fixture of ../shared/fixtures parsed {args.n} times per mode, median of {args.runs} runs, µs per "
          f"parse; Python {platform.python_version()}. `full` = every sample; `targeted` = only the names of the "
          "page's engine adapter (what the poller does); `normalize` = targeted parse + mapping to normalized "
          "series. Target ≥ 30× prometheus_client.")
    print()
    print("| fixture | bytes | prometheus_client | full | × | targeted | × | normalize | × |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"| **all (sum of medians)** | | | | {totals['pc'] / totals['full']:.1f}× | | "
          f"{totals['pc'] / totals['targeted']:.1f}× | | |")
    print()


if __name__ == "__main__":
    main()
