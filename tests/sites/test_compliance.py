"""Software-baseline compliance of nodes, GPUs and endpoints against a site's pinned versions."""

from __future__ import annotations

import pytest

from sites.compliance import check, site_compliance, version_matches
from tests import factories


@pytest.mark.parametrize(("pinned", "reported", "expected"), [
    ("570.133", "570.133", True),
    ("570.133", "570.133.20", True),
    ("570.133", "570.1330", False),
    ("570.133.20", "570.133", False),
    ("12.8", "12.4", False),
    (" 0.8.5 ", "0.8.5", True),
])
def test_version_matches_equal_or_dotted_prefix(pinned, reported, expected) -> None:
    # given / when / then
    assert version_matches(pinned=pinned, reported=reported) is expected


def test_check_states() -> None:
    # given / when / then
    assert check(pinned="", reported="570") is None  # nothing pinned: nothing to check
    assert check(pinned="570", reported="") == "unknown"  # absent is not compliant
    assert check(pinned="570", reported="570.1") == "ok"
    assert check(pinned="570", reported="550.1") == "drift"


@pytest.mark.django_db
def test_site_compliance_finds_drifting_nodes_and_endpoints(world) -> None:
    # given
    site = world.site_a
    site.baseline_driver_version, site.baseline_cuda_version = "570.133", "12.8"
    site.baseline_trtllm_version, site.baseline_nemo_version = "0.19.0", "25.04"
    site.baseline_engine_versions = {"vllm": "0.8.5"}
    site.save()
    good = factories.NodeFactory(site=site, driver_version="570.133.20", cuda_driver_version="12.8")
    old = factories.NodeFactory(site=site, driver_version="550.54.15", cuda_driver_version="12.8")
    silent = factories.NodeFactory(site=site)
    gpu_reporting = factories.GpuFactory(node=good, driver_version="565.57.01")
    gpu_silent = factories.GpuFactory(node=good)
    vllm_ok = factories.ServingEndpointFactory(site=site, engine="vllm", engine_version="0.8.5")
    auto_trt = factories.ServingEndpointFactory(site=site, engine="auto", detected_engine="trtllm",
                                                engine_version="0.18.2")
    tgi = factories.ServingEndpointFactory(site=site, engine="tgi", engine_version="3.2.0")  # not pinned
    # when
    report = site_compliance(site=site, nodes=[good, old, silent], gpus=[gpu_reporting, gpu_silent],
                             endpoints=[vllm_ok, auto_trt, tgi])
    # then
    by_label = {(i.kind, i.label): i for i in report.items}
    assert by_label[("node", good.hostname)].state == "ok"
    assert by_label[("node", old.hostname)].state == "drift"
    assert [c.component for c in by_label[("node", old.hostname)].drifts] == ["driver"]
    assert by_label[("node", silent.hostname)].state == "unknown"
    assert by_label[("gpu", str(gpu_reporting))].state == "drift"
    assert ("gpu", str(gpu_silent)) not in by_label
    assert by_label[("endpoint", vllm_ok.name)].state == "ok"
    assert by_label[("endpoint", auto_trt.name)].checks[0].pinned == "0.19.0"  # falls back to the TRT-LLM pin
    assert by_label[("endpoint", auto_trt.name)].state == "drift"
    assert ("endpoint", tgi.name) not in by_label
    assert (report.ok, report.drift, report.unknown) == (2, 3, 1)
    assert report.unchecked == ["NeMo"]
