"""Issue 12's "Done when": a team's budget holds across two real gateway processes sharing one spend store.

Two ``modelmeter serve`` processes on 127.0.0.1 share the tenant registry, its spend store (``tenants.spend.sqlite``
beside it) and the lake; 32 concurrent clients call both (the seed's ``/invoke_model`` and ``/v1/chat/completions``)
for a team in block mode whose tiny budget is crossed a few dozen calls in. Shown:

- each alert threshold (50, 80, 100 %) alerted exactly once, fleet-wide (one line each in ``<lake>/alerts/``);
- every call sent after the block (after the 100 % alert was raised) got 429 with the JSON body naming the budget;
- the overshoot is under the documented bound: calls in flight at the crossing (at most the 32 clients) × the
  largest cost of one call;
- exactly one usage event per call, admitted or refused (refused: ``throttled``, ``refusal_reason`` ``budget``);
- the store's spend is the sum of the events' ``cost_usd``, exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from common.calendar import Calendar
from common.contracts import Team
from common.lake import Lake
from ingest.alerts import read_alerts
from ingest.spend import PICO_PER_USD, SqliteSpendStore, store_path
from ingest.tenants import LocalTenantRegistry
from modelmeter.cli import main
from sql.render import connect
from tests.faults.harness import GatewayProcess, lake_events

TEAM = "capped"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"  # priced in the built-in catalog (the simulator answers it)
BUDGET = Decimal("0.002")  # a few dozen simulator calls (about $0.00005 each)
CLIENTS = 32
CALLS = 480


@dataclass
class Sent:
    """One call as the client saw it."""

    route: str
    sent_at: datetime
    status: int
    request_id: str | None
    body: Any


@dataclass
class FleetRun:
    lake: Path
    tenants: Path
    sent: list[Sent]
    events: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    spend_pico: int
    usage: dict[str, Any]


def _call(url: str, secret: str, route: str, i: int) -> Sent:
    sent_at = datetime.now(UTC)
    if route == "v1":
        r = requests.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"}, timeout=30,
                          json={"model": MODEL, "messages": [{"role": "user", "content": f"question {i}"}]})
    else:
        r = requests.post(f"{url}/invoke_model?model_id={MODEL}", json={"inputs": f"question {i}"}, timeout=30,
                          headers={"x-api-key": secret, "team_id": TEAM})
    return Sent(route=route, sent_at=sent_at, status=r.status_code, request_id=r.headers.get("x-request-id"),
                body=r.json())


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetRun]:
    tmp = tmp_path_factory.mktemp("fleet")
    tenants, lake = tmp / "tenants.json", tmp / "lake"
    registry = LocalTenantRegistry(tenants)
    registry.put_team(Team(team_id=TEAM, monthly_budget_usd=BUDGET, budget_mode="block"))
    secret = registry.create_key(TEAM)[1]
    gateways = [GatewayProcess(lake=lake, tenants=tenants, upstream="simulator",
                               env={"MODELMETER_SPOOL_DIR": str(tmp / f"spool-{n}")}) for n in (1, 2)]
    for g in gateways:
        g.start()
    try:
        sent: list[Sent] = []
        lock, cursor = threading.Lock(), iter(range(CALLS))

        def client() -> None:
            while True:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    return
                outcome = _call(gateways[i % 2].url, secret, "v1" if i % 3 else "seed", i)
                with lock:
                    sent.append(outcome)

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        usage = requests.get(f"{gateways[1].url}/v1/usage", headers={"Authorization": f"Bearer {secret}"},
                             timeout=10).json()
    finally:
        for g in gateways:
            code, stderr = g.stop()
            assert code == 0, stderr
    period = Calendar().period(datetime.now(UTC)).key
    store = SqliteSpendStore(store_path(tenants))
    spend = store.read(TEAM, period=period, day=period).spend_pico
    store.close()
    yield FleetRun(lake=lake, tenants=tenants, sent=sent, events=lake_events(lake),
                   alerts=read_alerts(Lake.open(lake)), spend_pico=spend, usage=usage)


def test_each_threshold_alerted_exactly_once_fleet_wide(fleet: FleetRun) -> None:
    mine = [a for a in fleet.alerts if a["team_id"] == TEAM]
    assert sorted(a["threshold_pct"] for a in mine) == [50, 80, 100]
    assert {a["budget_usd"] for a in mine} == {"0.002"} and {a["budget_mode"] for a in mine} == {"block"}


def test_every_call_sent_after_the_block_got_429_with_the_budget_in_its_body(fleet: FleetRun) -> None:
    blocked_at = datetime.fromisoformat(next(a["raised_at"] for a in fleet.alerts if a["threshold_pct"] == 100))
    after = [s for s in fleet.sent if s.sent_at > blocked_at]
    assert len(after) > CALLS // 2, "the budget should be crossed early in the run"
    assert {s.status for s in after} == {429}
    for s in after:
        details = s.body["error"] if s.route == "v1" else s.body
        assert details["budget_usd"] == "0.002" and Decimal(details["spend_usd"]) >= BUDGET
        assert details["period"] and details["resets_at"].endswith("Z")
        assert "monthly budget of 0.002 USD" in details["message"]
    assert {s.status for s in fleet.sent} == {200, 429}


def test_overshoot_within_the_documented_bound(fleet: FleetRun) -> None:
    costs = [Decimal(e["cost_usd"]) for e in fleet.events if e["status"] == "ok"]
    assert all(e["cost_usd"] is not None for e in fleet.events if e["status"] == "ok")
    spend = Decimal(fleet.spend_pico) / PICO_PER_USD
    assert spend == sum(costs)  # the counters are the events' own costs, exactly
    overshoot = spend - BUDGET
    bound = CLIENTS * max(costs)  # calls in flight at the crossing (≤ the clients) × the largest cost of one call
    assert Decimal(0) <= overshoot < bound, (overshoot, bound)
    print(f"\nadmitted {len(costs)} calls, spend {spend} USD of {BUDGET}: overshoot {overshoot} USD "
          f"({overshoot / max(costs):.1f} × the largest call {max(costs)}; bound {bound})")
    assert Decimal(fleet.usage["spend_usd"]) == spend and fleet.usage["remaining_usd"].startswith("-")
    assert fleet.usage["thresholds_crossed"] == [50, 80, 100] == fleet.usage["alerts_raised"]


def test_exactly_one_usage_event_per_call_admitted_or_refused(fleet: FleetRun) -> None:
    by_request: dict[str, list[dict[str, Any]]] = {}
    for e in fleet.events:
        by_request.setdefault(e["request_id"], []).append(e)
    assert len(fleet.events) == len(fleet.sent) == CALLS
    for s in fleet.sent:
        (event,) = by_request[s.request_id or ""]
        if s.status == 429:
            assert (event["status"], event["refusal_reason"], event["http_status"]) == ("throttled", "budget", 429)
            assert event["cost_usd"] in (None, "0.000000000000")
        else:
            assert event["status"] == "ok" and event["refusal_reason"] is None


def test_after_a_transform_the_counters_are_the_curated_figures(fleet: FleetRun,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the counters as the gateways left them (the events' own costs)
    # WHEN the day is transformed (the correction runs at the end of `modelmeter transform`)
    today = datetime.now(UTC).date().isoformat()
    assert main(["transform", "--lake", str(fleet.lake), "--from", today, "--to", today]) == 0
    assert "budget counters of fiscal month" in capsys.readouterr().err
    # THEN the store holds the curated total_cost of the fiscal month, which is what the gateway had counted
    con = connect(lake=Lake.open(fleet.lake))
    (curated,) = con.execute("select sum(total_cost) from usage_local where team_id = ?", [TEAM]).fetchone()
    period = Calendar().period(datetime.now(UTC)).key
    store = SqliteSpendStore(store_path(fleet.tenants))
    corrected = store.read(TEAM, period=period, day=period).spend_pico
    store.close()
    assert corrected == int(Decimal(curated) * PICO_PER_USD) == fleet.spend_pico
