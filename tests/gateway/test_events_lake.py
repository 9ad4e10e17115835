"""A run's usage events land in the lake one per authenticated request, in schema v1, at the app's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from common.contracts import parse_event, value_problems
from ingest.providers.registry import build_router

from .conftest import run_gateway

SIMULATED_START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class SimulatedClock:
    """The demo's replay clock: each reading is ten seconds after the previous one (a call reads it several times:
    limits, the placeholder written before the model is called, the event)."""

    def __init__(self):
        self.now = SIMULATED_START

    def __call__(self):
        self.now += timedelta(seconds=10)
        return self.now


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    yield from run_gateway(tmp_path_factory.mktemp("events"), build_router(upstream="simulator"),
                           clock=SimulatedClock())


def test_one_event_per_authenticated_request(gw):
    # GIVEN a mix of successes, refusals and unauthenticated calls on both APIs
    seed = f"{gw.url}/invoke_model?model_id=amazon.nova-lite-v1:0"
    alpha = {"x-api-key": gw.keys["alpha"], "team_id": "alpha"}
    bearer = {"Authorization": f"Bearer {gw.keys['beta']}"}
    calls = (
        [lambda i=i: requests.post(seed, json={"inputs": f"q{i}"}, headers=alpha, timeout=10) for i in range(12)]
        + [lambda: requests.post(seed, json={"inputs": 1}, headers=alpha, timeout=10)] * 3
        + [lambda: requests.post(seed, json={"inputs": "x"}, headers={**alpha, "team_id": "beta"}, timeout=10)] * 2
        + [lambda: requests.post(f"{gw.url}/v1/chat/completions", headers=bearer, timeout=10, json={
            "model": "amazon.nova-pro-v1:0", "messages": [{"role": "user", "content": "hi"}]})] * 5
        + [lambda: requests.post(f"{gw.url}/v1/embeddings", headers=bearer, timeout=10, json={
            "model": "amazon.nova-x", "input": "hi"})] * 2
        + [lambda: requests.post(seed, json={"inputs": "x"}, headers={"x-api-key": "nope", "team_id": "a"},
                                 timeout=10)] * 4)
    # WHEN they are all answered and the spool is delivered
    responses = [call() for call in calls]
    authenticated = [r.headers["x-request-id"] for r in responses if r.status_code != 403 or "x-request-id" in
                     r.headers]
    events = gw.events()
    # THEN the lake holds exactly one valid event per authenticated request, none for the others
    assert len(authenticated) == 24 and sorted(e["request_id"] for e in events) == sorted(authenticated)
    by_status = {}
    for e in events:
        assert parse_event({**e, "event_time": e["event_time"].isoformat()})
        assert value_problems(e, now=SIMULATED_START + timedelta(days=1)) == []
        by_status[e["status"]] = by_status.get(e["status"], 0) + 1
    assert by_status == {"ok": 19, "client_error": 5}
    # AND event_time comes from the injected (simulated) clock, not the wall clock
    assert all(SIMULATED_START < e["event_time"] <= SIMULATED_START + timedelta(hours=1) for e in events)
    assert len({e["event_id"] for e in events}) == 24
