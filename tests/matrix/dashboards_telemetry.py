"""Telemetry dashboards (issue 7): GPU and endpoint pages, their JSON, and the telemetry charts of the overview and
the site page. Partner A's members read them; partner B and tenant people get 404; anonymous fetch() gets 401."""

from dataclasses import replace

from tests.matrix import Case, reads, tenant_people

gpu_a = lambda w: {"slug": w.site_a.slug, "pk": w.gpu_a.pk}  # noqa: E731
endpoint_a = lambda w: {"slug": w.site_a.slug, "pk": w.endpoint_a.pk}  # noqa: E731
site_name = lambda w, o: [getattr(w, f"site_{o}").name]  # noqa: E731
everyone = {"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 200, **tenant_people(200)}


def _chart(route: str, kwargs, name: str) -> Case:
    return replace(reads(route, kwargs=lambda w: {**kwargs(w), "name": name}, anonymous=401),
                   id=f"GET {route} {name}")


CASES = [
    reads("telemetry:gpu_detail", kwargs=gpu_a),
    reads("telemetry:gpu_live", kwargs=gpu_a, anonymous=401),
    *[_chart("telemetry:gpu_chart", gpu_a, name) for name in ("util", "power", "memory")],
    reads("telemetry:endpoint_detail", kwargs=endpoint_a),
    reads("telemetry:endpoint_live", kwargs=endpoint_a, anonymous=401),
    *[_chart("telemetry:endpoint_chart", endpoint_a, name) for name in ("tokens", "requests", "latency", "gauges",
                                                                         "health")],
    *[_chart("sites:site_chart", lambda w: {"slug": w.site_a.slug}, name)
      for name in ("heatmap", "power", "tokens", "latency")],
    *[Case("sites:overview_chart", kwargs=lambda w, n=name: {"name": n}, expect=everyone, hides=site_name,
           id=f"GET sites:overview_chart {name}") for name in ("utilization", "power", "tokens")],
    # Partner B's GPU and endpoint through partner A's site slug: 404 for A's members too (no cross-site lookup).
    replace(reads("telemetry:gpu_detail", kwargs=lambda w: {"slug": w.site_a.slug, "pk": w.gpu_b.pk}, own=404),
            id="GET telemetry:gpu_detail other partner's GPU under own site"),
    replace(reads("telemetry:endpoint_detail", kwargs=lambda w: {"slug": w.site_a.slug, "pk": w.endpoint_b.pk},
                  own=404), id="GET telemetry:endpoint_detail other partner's endpoint under own site"),
]
