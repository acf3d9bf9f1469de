"""Settings of the web processes that are not Django settings: the garbage collector's."""

from __future__ import annotations

import gc

# A dashboard request allocates tens of thousands of containers (a heatmap's 36,000 cells, a big site's 1,125 node
# rows). At CPython's default thresholds (700, 10, 10) they set off young collections mid-request that promote
# request-lived objects, and every few dozen requests a full collection walks the whole heap, Django's modules,
# URL conf and templates included: a 50–100 ms pause on that request, which is what set the panels' p95
# (docs/dashboards.md, "Performance"). Requests free their objects by reference counting; the collector is only
# for cycles, so collecting less often holds little memory.
WEB_GC_THRESHOLDS = (10_000, 50, 100)


def web_process_gc_tune() -> None:
    """Once the application is loaded: freeze what is alive now (modules, settings, URL conf, loaded templates) into
    the collector's permanent generation, so full collections no longer walk it, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*WEB_GC_THRESHOLDS)
