"""GPU telemetry API routes: the agent push endpoint (node token only) and node agent/collector settings."""

from tests.matrix import Case, reads, tenant_people, writes

node_a = lambda w: {"pk": w.node_a.pk}  # noqa: E731

CASES = [
    # The push endpoint takes a node token only: a user's token (or none) is not one, whoever the user is.
    Case("gpu-readings-ingest", method="post", api=True,
         data=lambda w: {"ts": "2026-03-02T12:00:00Z", "gpus": []},
         expect={"anonymous": 401, "operator": 401, "viewer": 401, "outsider": 401, **tenant_people(401)}),
    writes("node-agent-token", method="post", ok=201, api=True, kwargs=node_a),
    reads("node-gpu-collector", api=True, kwargs=node_a),
    writes("node-gpu-collector", method="put", ok=200, api=True, kwargs=node_a,
           data=lambda w: {"mode": "dcgm", "dcgm_url": "http://127.0.0.1:9400/metrics"}),
]
