"""Software-baseline compliance: which nodes, GPUs and endpoints drift from the versions a site pins.

Pure functions over inventory rows. A pinned version matches a reported one when they are equal or
when the pin is a prefix at a dot boundary (pin `570.133` accepts `570.133.20`), so a site can pin a
branch without naming every patch release. An empty reported version is *unknown*, never compliant:
absent is not a match.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sites.choices import Engine
from sites.models import Gpu, Node, ServingEndpoint, Site

OK, DRIFT, UNKNOWN = "ok", "drift", "unknown"


def version_matches(*, pinned: str, reported: str) -> bool:
    pinned, reported = pinned.strip(), reported.strip()
    return reported == pinned or reported.startswith(pinned + ".")


def check(*, pinned: str, reported: str) -> str | None:
    """ok / drift / unknown, or None when the site pins nothing for this component."""
    if not pinned.strip():
        return None
    if not reported.strip():
        return UNKNOWN
    return OK if version_matches(pinned=pinned, reported=reported) else DRIFT


@dataclass(frozen=True)
class ComponentCheck:
    component: str  # "driver", "CUDA", "vllm", ...
    pinned: str
    reported: str
    state: str  # ok / drift / unknown


@dataclass(frozen=True)
class ItemCompliance:
    kind: str  # node / gpu / endpoint
    pk: int
    label: str
    checks: list[ComponentCheck]
    # How many items of the same kind and versions this one stands for (GPUs grouped by reported versions, so a
    # 9,000-GPU site is checked per distinct version pair, not per GPU).
    count: int = 1

    @property
    def state(self) -> str:
        states = {c.state for c in self.checks}
        return DRIFT if DRIFT in states else UNKNOWN if UNKNOWN in states else OK

    @property
    def drifts(self) -> list[ComponentCheck]:
        return [c for c in self.checks if c.state != OK]


@dataclass(frozen=True)
class SiteCompliance:
    pinned: dict[str, str]
    items: list[ItemCompliance] = field(default_factory=list)
    # Pinned components no inventory field reports, so nothing can be checked against them.
    unchecked: list[str] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(i.count for i in self.items if i.state == state)

    @property
    def ok(self) -> int:
        return self.count(OK)

    @property
    def drift(self) -> int:
        return self.count(DRIFT)

    @property
    def unknown(self) -> int:
        return self.count(UNKNOWN)

    @property
    def drifting_items(self) -> list[ItemCompliance]:
        return [i for i in self.items if i.state != OK]


def _checks(pairs: Iterable[tuple[str, str, str]]) -> list[ComponentCheck]:
    out = []
    for component, pinned, reported in pairs:
        state = check(pinned=pinned, reported=reported)
        if state is not None:
            out.append(ComponentCheck(component=component, pinned=pinned.strip(), reported=reported.strip(),
                                      state=state))
    return out


def endpoint_pinned_version(*, site: Site, endpoint: ServingEndpoint) -> tuple[str, str]:
    """(engine, pinned version) for an endpoint: the detected engine wins over a configured `auto`."""
    engine = endpoint.detected_engine or endpoint.engine
    pinned = (site.baseline_engine_versions or {}).get(engine, "")
    if not pinned and engine in (Engine.TRTLLM, Engine.TRITON):
        # trtllm-serve and Triton's TensorRT-LLM backend report the TensorRT-LLM version.
        pinned = site.baseline_trtllm_version
    return engine, pinned


@dataclass(frozen=True)
class GpuVersionGroup:
    """GPUs of a site that report the same versions: `count` of them, `example` the label of one."""

    driver_version: str
    cuda_driver_version: str
    count: int
    example: str
    example_pk: int


def site_compliance(
    *, site: Site, nodes: Iterable[Node], gpus: Iterable[Gpu], endpoints: Iterable[ServingEndpoint],
    gpu_groups: Iterable[GpuVersionGroup] = (),
) -> SiteCompliance:
    pinned = {
        "driver": site.baseline_driver_version, "CUDA": site.baseline_cuda_version,
        "TensorRT-LLM": site.baseline_trtllm_version, "NeMo": site.baseline_nemo_version,
        **{engine: version for engine, version in (site.baseline_engine_versions or {}).items()},
    }
    pinned = {k: v.strip() for k, v in pinned.items() if v and v.strip()}
    items: list[ItemCompliance] = []
    for node in nodes:
        checks = _checks([("driver", site.baseline_driver_version, node.driver_version),
                          ("CUDA", site.baseline_cuda_version, node.cuda_driver_version)])
        if checks:
            items.append(ItemCompliance(kind="node", pk=node.pk, label=node.hostname, checks=checks))
    for gpu in gpus:
        # The driver is a node-wide fact checked on the node; a GPU is checked only for what it reports
        # itself (NVML read by the node worker), so an unreported GPU value is not counted twice as unknown.
        checks = _checks([(name, pin, value) for name, pin, value in (
            ("driver", site.baseline_driver_version, gpu.driver_version),
            ("CUDA", site.baseline_cuda_version, gpu.cuda_driver_version)) if value.strip()])
        if checks:
            items.append(ItemCompliance(kind="gpu", pk=gpu.pk, label=str(gpu), checks=checks))
    for group in gpu_groups:
        checks = _checks([(name, pin, value) for name, pin, value in (
            ("driver", site.baseline_driver_version, group.driver_version),
            ("CUDA", site.baseline_cuda_version, group.cuda_driver_version)) if value.strip()])
        if checks:
            label = group.example if group.count == 1 else f"{group.count} GPUs (e.g. {group.example})"
            items.append(ItemCompliance(kind="gpu", pk=group.example_pk, label=label, checks=checks,
                                        count=group.count))
    checked_engines = set()
    for endpoint in endpoints:
        engine, pin = endpoint_pinned_version(site=site, endpoint=endpoint)
        checks = _checks([(engine, pin, endpoint.engine_version)])
        if checks:
            checked_engines.add(engine)
            items.append(ItemCompliance(kind="endpoint", pk=endpoint.pk, label=endpoint.name, checks=checks))
    unchecked = []
    if "NeMo" in pinned:
        unchecked.append("NeMo")  # no node or endpoint field reports a NeMo version yet
    if "TensorRT-LLM" in pinned and not checked_engines & {Engine.TRTLLM, Engine.TRITON}:
        unchecked.append("TensorRT-LLM")
    return SiteCompliance(pinned=pinned, items=items, unchecked=unchecked)
