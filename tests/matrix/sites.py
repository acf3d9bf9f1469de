"""Partner inventory pages and API routes.

Tenant people (alice, bob, charlie) are nobody's partner staff: inventory objects answer 404, scoped lists
answer 200 with nothing in them (as for any account without a partner), creates answer 403 on pages and 400
("does not exist") in the API, where the scoped parent field cannot resolve partner A's objects."""

from tests.matrix import LOGIN, Case, reads, tenant_people, writes

site_a = lambda w: {"slug": w.site_a.slug}  # noqa: E731
node_a = lambda w: {"slug": w.site_a.slug, "pk": w.node_a.pk}  # noqa: E731
gpu_a = lambda w: {"slug": w.site_a.slug, "pk": w.gpu_a.pk}  # noqa: E731
endpoint_a = lambda w: {"slug": w.site_a.slug, "pk": w.endpoint_a.pk}  # noqa: E731


def site_payload(w) -> dict:
    return {
        "partner": w.partner_a.pk, "name": "New Site", "country": "US", "city": "Austin",
        "time_zone": "America/Chicago", "status": "planned", "contract_date": "2026-02-01",
        "power_capacity_kw": "5000", "pue": "1.25", "electricity_price_per_kwh": "0.06", "currency": "USD",
        "capex_per_gpu": "28000", "amortization_months": 48, "opex_per_gpu_hour": "0.12",
        "utilization_target_pct": 70, "gpu_poll_interval_s": 10, "baseline_engine_versions": "{}",
    }


def site_payload_api(w) -> dict:
    return {**site_payload(w), "baseline_engine_versions": {"vllm": "0.8.5"}}


CASES = [
    # Public and account routes.
    Case("login", expect={"anonymous": 200, "operator": 302, "viewer": 302, "outsider": 302, **tenant_people(302)}),
    Case("logout", method="post", expect={"anonymous": 302, "operator": 302, "viewer": 302, "outsider": 302,
                                          **tenant_people(302)}),
    Case("api-schema", expect={"anonymous": 200, "operator": 200, "viewer": 200, "outsider": 200,
                               **tenant_people(200)}),
    Case("api-docs", expect={"anonymous": 200, "operator": 200, "viewer": 200, "outsider": 200, **tenant_people(200)}),
    Case("api-token", method="post", api=True, data=lambda w: {"username": "nobody", "password": "wrong"},
         expect={"anonymous": 400, "operator": 400, "viewer": 400, "outsider": 400, **tenant_people(400)}),
    Case("home", expect={"anonymous": LOGIN, "operator": 200, "viewer": 200, "outsider": 200, **tenant_people(302)}),
    # Pages.
    Case("sites:site_list", expect={"anonymous": LOGIN, "operator": 200, "viewer": 200, "outsider": 200,
                                    **tenant_people(200)},
         hides=lambda w, o: [getattr(w, f"site_{o}").name]),
    Case("sites:site_create", expect={"anonymous": LOGIN, "operator": 200, "viewer": 403, "outsider": 200,
                                      **tenant_people(403)}),
    Case("sites:site_create", method="post", data=site_payload, id="POST sites:site_create",
         expect={"anonymous": LOGIN, "operator": 302, "viewer": 403, "outsider": 200, **tenant_people(403)}),
    reads("sites:site_detail", kwargs=site_a),
    writes("sites:site_edit", method="get", ok=200, kwargs=site_a),
    writes("sites:node_create", method="get", ok=200, kwargs=site_a),
    writes("sites:node_create", method="post", ok=302, kwargs=site_a, data=lambda w: {"hostname": "node-new",
                                                                                       "status": "pending"}),
    writes("sites:node_edit", method="get", ok=200, kwargs=node_a),
    writes("sites:gpu_create", method="get", ok=200, kwargs=site_a),
    writes("sites:gpu_edit", method="get", ok=200, kwargs=gpu_a),
    writes("sites:endpoint_create", method="get", ok=200, kwargs=site_a),
    writes("sites:endpoint_edit", method="post", ok=302, kwargs=endpoint_a,
           data=lambda w: {"name": "renamed", "engine": "vllm", "metrics_url": "http://127.0.0.1:9/metrics",
                           "enabled": "on"}),
    # API.
    Case("partner-list", api=True, expect={"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 200,
                                           **tenant_people(200)}),
    reads("partner-detail", api=True, kwargs=lambda w: {"pk": w.partner_a.pk}),
    Case("site-list", api=True, expect={"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 200,
                                        **tenant_people(200)},
         hides=lambda w, o: [getattr(w, f"site_{o}").name]),
    Case("site-list", method="post", api=True, data=site_payload_api, id="POST site-list",
         # partner B's owner cannot even name partner A: the scoped field answers 400 "does not exist".
         expect={"anonymous": 401, "operator": 201, "viewer": 403, "outsider": 400, **tenant_people(400)}),
    reads("site-detail", api=True, kwargs=lambda w: {"pk": w.site_a.pk}),
    writes("site-detail", method="patch", ok=200, api=True, kwargs=lambda w: {"pk": w.site_a.pk},
           data=lambda w: {"pue": "1.15"}),
    Case("node-list", api=True, expect={"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 200,
                                        **tenant_people(200)},
         hides=lambda w, o: [getattr(w, f"node_{o}").hostname]),
    Case("node-list", method="post", api=True, id="POST node-list",
         data=lambda w: {"site": w.site_a.pk, "hostname": "node-api"},
         expect={"anonymous": 401, "operator": 201, "viewer": 403, "outsider": 400, **tenant_people(400)}),
    reads("node-detail", api=True, kwargs=lambda w: {"pk": w.node_a.pk}),
    writes("node-detail", method="patch", ok=200, api=True, kwargs=lambda w: {"pk": w.node_a.pk},
           data=lambda w: {"driver_version": "570.133.20"}),
    Case("gpu-list", api=True, expect={"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 200,
                                       **tenant_people(200)},
         hides=lambda w, o: [getattr(w, f"gpu_{o}").uuid]),
    Case("gpu-list", method="post", api=True, id="POST gpu-list",
         data=lambda w: {"node": w.node_a.pk, "uuid": "GPU-new-1", "index": 1},
         expect={"anonymous": 401, "operator": 201, "viewer": 403, "outsider": 400, **tenant_people(400)}),
    reads("gpu-detail", api=True, kwargs=lambda w: {"pk": w.gpu_a.pk}),
    writes("gpu-detail", method="patch", ok=200, api=True, kwargs=lambda w: {"pk": w.gpu_a.pk},
           data=lambda w: {"serial": "1650123456789"}),
    Case("endpoint-list", api=True, expect={"anonymous": 401, "operator": 200, "viewer": 200, "outsider": 200,
                                            **tenant_people(200)},
         hides=lambda w, o: [getattr(w, f"endpoint_{o}").name]),
    Case("endpoint-list", method="post", api=True, id="POST endpoint-list",
         data=lambda w: {"site": w.site_a.pk, "name": "sglang-1", "engine": "sglang",
                         "metrics_url": "http://127.0.0.1:30000/metrics"},
         expect={"anonymous": 401, "operator": 201, "viewer": 403, "outsider": 400, **tenant_people(400)}),
    reads("endpoint-detail", api=True, kwargs=lambda w: {"pk": w.endpoint_a.pk}),
    writes("endpoint-detail", method="patch", ok=200, api=True, kwargs=lambda w: {"pk": w.endpoint_a.pk},
           data=lambda w: {"served_model": "meta-llama/Llama-3.1-8B-Instruct"}),
]
