"""Helpers for the GPU telemetry tests: a manual clock that also runs the fake GPUs' energy counters."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from telemetry.collectors.nvml import NvmlReader, reading_to_dict
from telemetry.gpu_services import QueuedReport
from tests.telemetry.fake_pynvml import FakeGpu, FakeNvml

T0 = dt.datetime(2026, 3, 2, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def frozen_after_t0():
    """Time frozen half an hour after T0 (the ingest's `now`)."""
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        yield


def queued(node, *reports) -> list[QueuedReport]:
    """The reports as the ingest task finds them in its queue."""
    return [QueuedReport(node_id=node.pk, payload=reading_to_dict(r)) for r in reports]


class Rig:
    """A fake node: FakeNvml + NvmlReader + a clock. `tick(s)` lets s seconds pass on GPUs and clock."""

    def __init__(self, gpus: list[FakeGpu], *, hostname: str = "node-a", start: dt.datetime = T0) -> None:
        self.nvml = FakeNvml(gpus)
        self.now = start
        self.reader = NvmlReader(self.nvml, hostname=hostname, clock=lambda: self.now)

    def tick(self, seconds: float) -> None:
        self.nvml.advance(seconds)
        self.now += dt.timedelta(seconds=seconds)

    def read(self):
        return self.reader.read()
