"""The demo's simulated engines serve valid pages over real loopback HTTP, with counters that only grow
between restarts."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from telemetry.simulator.engines import EmulatedEngine, EngineFleet


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize("kind", ["vllm", "sglang", "tgi", "llamacpp", "nim", "trtllm"])
def test_every_simulated_kind_serves_a_parseable_page_over_http(kind):
    # given
    fleet = EngineFleet([EmulatedEngine("e1", kind, ["meta-llama/Llama-3.1-8B-Instruct"])]).start()
    try:
        # when
        body = urllib.request.urlopen(fleet.url("e1"), timeout=5).read().decode()
        missing = urllib.request.Request(f"http://127.0.0.1:{fleet.port}/nope/metrics")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(missing, timeout=5)
    finally:
        fleet.stop()
    # then
    assert _samples(body)
    assert exc.value.code == 404


def test_counters_grow_with_time_and_reset_on_restart():
    # given
    clock = FakeClock(1_800_000_000.0)
    engine = EmulatedEngine("e", "sglang", ["m"], [{"tenant_id": "acme"}, {"tenant_id": "globex"}],
                            restart_every_s=600, clock=clock)
    key = ("sglang:generation_tokens_total", (("model_name", "m"), ("tenant_id", "acme")))
    values = []
    # when
    for _ in range(6):
        clock.now += 120
        engine.advance()
        values.append(_samples(engine.render())[key])
    # then: monotone up to the restart at 600 s, which resets the counter and the process start time
    assert values[0] < values[1] < values[2] < values[3]
    assert values[4] == 0 and engine.restarts == 1
    assert _samples(engine.render())[("process_start_time_seconds", ())] == pytest.approx(clock.now - 120, abs=1)


def test_emulator_refuses_to_listen_beyond_loopback():
    with pytest.raises(ValueError, match="loopback"):
        EngineFleet([], host="0.0.0.0")
