"""`make bench`: run every benchmark under bench/ and write docs/benchmarks.md.

Each benchmark is a script `bench/<name>.py` that, run on its own (against the throwaway PostgreSQL that
`make bench` starts, DATABASE_URL set), prints one markdown section to stdout: a `## ` heading, what was
measured, the machine-independent setup, and a table whose figures are the median of several runs, each
next to its peer measured in the same run. This runner adds the machine and the date.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Order matters only for reading; every script is independent (the load generator late: it leaves the most
# rows behind; the counter-snapshot retention after it, the first to go should the time budget run out).
# `bench/dashboard.py` comes from the dashboards work; a script missing on a branch is skipped.
BENCHMARKS = ["parser", "gpu_ingest", "scrape_round", "retention", "dashboard", "loadgen", "metering_retention"]
# Arguments that keep `make bench` under 10 minutes in all; each script's own defaults are the longer runs.
ARGS = {
    "gpu_ingest": ["--rows", "200000", "--runs", "3"],
    "scrape_round": ["--rounds", "3"],
    "retention": ["--gpus", "100,200", "--hot-gpus", "", "--runs", "3"],
    "dashboard": ["--runs", "15", "--cold-runs", "3"],
    "loadgen": ["--duration", "60", "--warmup", "15"],
    "metering_retention": ["--series", "30"],
}
# The scripts' own budget; `make bench` adds ≈ 15 s (install check, the throwaway cluster) and stays under 10 minutes.
TIME_LIMIT_S = int(os.environ.get("BENCH_TIME_LIMIT_S", "570"))


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def main() -> int:
    selected = sys.argv[1:] or [name for name in BENCHMARKS if (ROOT / "bench" / f"{name}.py").exists()]
    sections, failed = [], []
    started = time.monotonic()
    for name in selected:
        left = TIME_LIMIT_S - (time.monotonic() - started)
        if left <= 10:
            failed.append(f"{name}: not run, the time budget was spent")
            continue
        print(f"== bench/{name}.py", file=sys.stderr, flush=True)
        try:
            result = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), *ARGS.get(name, [])],
                                    cwd=ROOT, text=True, capture_output=True, timeout=left)
        except subprocess.TimeoutExpired:
            failed.append(f"{name}: timed out")
            continue
        sys.stderr.write(result.stderr[-4000:])
        if result.returncode != 0:
            failed.append(f"{name}: exit {result.returncode}")
            continue
        took = time.monotonic() - started - (TIME_LIMIT_S - left)
        sections.append(result.stdout.strip() + f"\n\n_`bench/{name}.py {' '.join(ARGS.get(name, []))}`"
                        f" took {took:.0f} s in this run._")
    header = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {machine()}.",
        "Each figure is the median of several runs; peers were measured in the same run on the same machine.",
        "",
    ]
    if failed:
        header += ["Not measured in this run: " + "; ".join(failed), ""]
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(header) + "\n\n".join(sections) + "\n")
    print("wrote docs/benchmarks.md", file=sys.stderr)
    return 1 if failed and not sections else 0


if __name__ == "__main__":
    sys.exit(main())
