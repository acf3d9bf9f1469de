"""The push path: per-node agent tokens and POST /api/v1/ingest/gpu-readings/."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from rest_framework.test import APIClient

from sites.models import Gpu, Node
from telemetry.collectors.nvml import reading_to_dict
from telemetry.gpu_services import node_agent_token_issue
from telemetry.models import GpuSample, NodeGpuCollector
from tests.telemetry.fake_pynvml import h100, p100
from tests.telemetry.gpu_support import T0, Rig

pytestmark = pytest.mark.django_db
URL = "/api/v1/ingest/gpu-readings/"


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(T0 + dt.timedelta(seconds=5), tick=False):
        yield


def _agent(token: str | None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _payload(*gpus) -> dict:
    return reading_to_dict(Rig(list(gpus) or [h100(0)]).read())


def test_operator_issues_a_token_shown_once_and_stored_hashed(world, api_client_for) -> None:
    # when
    response = api_client_for("operator").post(f"/api/v1/nodes/{world.node_a.pk}/agent-token/")
    # then
    assert response.status_code == 201
    token = response.json()["token"]
    assert token.startswith("fpn_")
    node = Node.objects.get(pk=world.node_a.pk)
    assert node.agent_token_hash and token not in node.agent_token_hash
    assert api_client_for("operator").get(f"/api/v1/nodes/{world.node_a.pk}/").json().get("token") is None


def test_a_valid_push_stores_readings_and_creates_the_gpus(world) -> None:
    # given
    token = node_agent_token_issue(node=world.node_a)
    # when
    response = _agent(token).post(URL, _payload(h100(0), p100(1)), format="json")
    again = _agent(token).post(URL, _payload(h100(0), p100(1)), format="json")
    # then
    assert response.status_code == 201, response.content
    assert response.json()["samples_written"] == 2 and again.json()["samples_written"] == 0
    assert set(Gpu.objects.filter(node=world.node_a).values_list("uuid", flat=True)) >= {h100(0).uuid, p100(1).uuid}
    assert {s.source for s in GpuSample.objects.all()} == {"agent"}
    assert GpuSample.objects.count() == 2


@pytest.mark.parametrize("header", [None, "Bearer fpn_wrong", "Bearer", "Token abc"])
def test_a_wrong_or_missing_token_is_401(world, header) -> None:
    # given
    node_agent_token_issue(node=world.node_a)
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    # when
    response = client.post(URL, _payload(), format="json")
    # then
    assert response.status_code == 401
    assert GpuSample.objects.count() == 0


def test_a_user_token_is_not_a_node_token(world, api_client_for) -> None:
    # when
    response = api_client_for("operator").post(URL, _payload(), format="json")
    # then
    assert response.status_code == 401


def test_a_replaced_token_stops_working(world) -> None:
    # given
    old = node_agent_token_issue(node=world.node_a)
    new = node_agent_token_issue(node=world.node_a)
    # when / then
    assert _agent(old).post(URL, _payload(), format="json").status_code == 401
    assert _agent(new).post(URL, _payload(), format="json").status_code == 201


def test_a_reading_for_another_sites_gpu_is_refused(world) -> None:
    # given: node A's token, a reading carrying partner B's GPU UUID
    token = node_agent_token_issue(node=world.node_a)
    # when
    response = _agent(token).post(URL, _payload(h100(0, uuid=world.gpu_b.uuid)), format="json")
    # then
    assert response.status_code == 403
    assert "another node" in response.json()["detail"]
    assert GpuSample.objects.count() == 0 and Gpu.objects.get(pk=world.gpu_b.pk).node_id == world.node_b.pk


def _mutate(payload: dict, path: str, value) -> dict:
    target = payload
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return payload


@pytest.mark.parametrize(("path", "value", "field"), [
    ("ts", KeyError, "ts"),
    ("ts", "yesterday-ish", "ts"),
    ("sent_at", (T0 - dt.timedelta(minutes=1)).isoformat(), "sent_at"),  # sent before it was read
    ("sent_at", "9999-12-31T23:59:59Z", "sent_at"),  # read too long before it was sent
    ("ts", (T0 - dt.timedelta(days=30)).isoformat(), "ts"),
    ("gpus", "not a list", "gpus"),
    ("gpus.0.util_pct", 150, "gpus"),
    ("gpus.0.power_w", -5, "gpus"),
    ("gpus.0.energy_mj", "lots", "gpus"),
    ("gpus.0.uuid", KeyError, "gpus"),
])
def test_a_malformed_payload_is_400_with_a_message(world, path, value, field) -> None:
    # given
    token = node_agent_token_issue(node=world.node_a)
    payload = _mutate(_payload(), path, value)
    # when
    response = _agent(token).post(URL, payload, format="json")
    # then
    assert response.status_code == 400, response.content
    assert field in response.json() and response.json()[field]
    assert GpuSample.objects.count() == 0


def test_duplicate_gpus_and_non_json_are_400(world) -> None:
    # given
    token = node_agent_token_issue(node=world.node_a)
    payload = _payload()
    payload["gpus"] = payload["gpus"] * 2
    # when
    duplicate = _agent(token).post(URL, payload, format="json")
    garbage = _agent(token).post(URL, "{not json", content_type="application/json")
    # then
    assert duplicate.status_code == 400 and "once per report" in str(duplicate.json()["gpus"])
    assert garbage.status_code == 400


def test_collector_settings_validate_and_scope(world, api_client_for) -> None:
    # given
    url = f"/api/v1/nodes/{world.node_a.pk}/gpu-collector/"
    # when
    missing_url = api_client_for("operator").put(url, {"mode": "dcgm"}, format="json")
    ok = api_client_for("operator").put(url, {"mode": "dcgm", "dcgm_url": "http://127.0.0.1:9400/metrics"},
                                       format="json")
    bad_url = api_client_for("operator").put(url, {"mode": "dcgm", "dcgm_url": "ftp://x"}, format="json")
    # then
    assert missing_url.status_code == 400 and "dcgm_url" in missing_url.json()
    assert ok.status_code == 200 and NodeGpuCollector.objects.get(node=world.node_a).mode == "dcgm"
    assert bad_url.status_code == 400
    assert api_client_for("viewer").get(url).json()["mode"] == "dcgm"
    assert api_client_for("outsider").get(url).status_code == 404
