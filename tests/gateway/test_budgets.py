"""Budgets, alerts, fleet-wide daily tokens and /v1/usage (ingest/budget.py, ingest/alerts.py, ingest/spend.py).

The guard against the stores (two guards on one SQLite file stand for two gateway processes), the HTTP surface on a
real uvicorn server, the command line's bad input, and the correction after a transform. The two-process run with
32 clients is tests/gateway/test_budgets_fleet.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests

from common.calendar import Calendar
from common.contracts import Limits, Team
from common.errors import ServiceUnavailable, Throttled, UpstreamClientError
from common.lake import Lake
from ingest.alerts import LocalAlerts, read_alerts
from ingest.app import create_app
from ingest.budget import BudgetGuard, ceiling_pico, correct_spend
from ingest.emit import local_emitter
from ingest.longpoll import MemoryLongPollStore
from ingest.pricing import GatewayPricer
from ingest.providers.base import ModelRequest, ModelResult
from ingest.providers.registry import ProviderRouter, build_router
from ingest.providers.simulator import SimulatorProvider
from ingest.server import start_background
from ingest.spend import PICO_PER_USD, MemorySpendStore, SpendStoreError, SqliteSpendStore
from ingest.tenants import LocalTenantRegistry
from modelmeter.cli import main
from pricing_catalog.store import load_catalog
from sql.config import ReportingConfig
from tests.fixture_lake import build_fixture_lake
from transforms.spend_correction import curated_spend, untransformed_days

NOW = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
BLOCK = Team(team_id="capped", monthly_budget_usd=Decimal("1"), budget_mode="block")
ALERT = Team(team_id="watched", monthly_budget_usd=Decimal("1"), alert_at=(50, 100))
USD = PICO_PER_USD


class Sink:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []

    def deliver(self, alert: Any) -> None:
        self.alerts.append(dict(alert))

    def status(self) -> dict[str, Any]:
        return {"delivered": len(self.alerts)}

    def close(self, *, timeout: float = 10.0) -> None: ...


class Broken(MemorySpendStore):
    """A store that does not answer."""

    def read(self, *a: Any, **k: Any) -> Any:
        raise SpendStoreError("spend store: cannot read (down)")

    def add(self, *a: Any, **k: Any) -> Any:
        raise SpendStoreError("spend store: cannot update (down)")


def _guard(store: Any, clock: list[datetime] | None = None, sink: Sink | None = None,
           calendar: Calendar | None = None) -> BudgetGuard:
    now = clock or [NOW]
    return BudgetGuard(store=store, calendar=calendar or Calendar(), clock=lambda: now[0], alerts=sink)


def _event(cost: str | None = "0.25", **counts: int) -> dict[str, Any]:
    return {"cost_usd": cost, "input_tokens": counts.get("input_tokens", 100),
            "output_tokens": counts.get("output_tokens", 50), **counts}


def test_block_mode_refuses_once_the_spend_reaches_the_budget_and_alerts_each_threshold_once() -> None:
    # GIVEN a block-mode team with a $1 budget and two guards sharing one store (two gateway processes)
    store, sink = MemorySpendStore(), Sink()
    a, b = _guard(store, sink=sink), _guard(store, sink=sink)
    # WHEN four calls of $0.25 finish, alternately on each
    for guard in (a, b, a):
        guard.check(BLOCK)
        guard.record(BLOCK, _event())
    b.check(BLOCK)  # $0.75 < $1: still admitted
    b.record(BLOCK, _event())
    # THEN the next call is refused on either, with the budget, the spend and the reset in its details
    for guard in (a, b):
        with pytest.raises(Throttled) as refused:
            guard.check(BLOCK)
        assert refused.value.refusal_reason == "budget" and refused.value.status_code == 429
        assert refused.value.details == {"budget_usd": "1", "spend_usd": "1", "period": "2026-11-01",
                                         "resets_at": "2026-12-01T00:00:00Z"}
        assert "monthly budget of 1 USD" in refused.value.message
        assert refused.value.retry_after == (datetime(2026, 12, 1, tzinfo=UTC) - NOW).total_seconds()
    assert [x["threshold_pct"] for x in sink.alerts] == [50, 80, 100]
    assert sink.alerts[-1] | {"raised_at": None} == sink.alerts[-1] | {
        "team_id": "capped", "budget_usd": "1", "spend_usd": "1", "period": "2026-11-01", "raised_at": None}
    # AND a new fiscal month starts from zero
    later = _guard(store, clock=[datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)])
    later.check(BLOCK)


def test_alert_mode_is_never_refused_and_a_zero_budget_blocks_everything() -> None:
    store, sink = MemorySpendStore(), Sink()
    guard = _guard(store, sink=sink)
    for _ in range(6):
        guard.check(ALERT)
        guard.record(ALERT, _event())
    assert [x["threshold_pct"] for x in sink.alerts] == [50, 100]
    with pytest.raises(Throttled):
        guard.check(Team(team_id="zero", monthly_budget_usd=Decimal(0), budget_mode="block"))


def test_unpriced_usage_counts_at_the_ceiling_in_block_mode_and_not_at_all_in_alert_mode() -> None:
    store = MemorySpendStore()
    guard = _guard(store)
    unpriced = _event(cost=None, input_tokens=10, output_tokens=0)
    guard.record(BLOCK, unpriced)
    guard.record(ALERT, unpriced)
    period = "2026-11-01"
    assert store.read("capped", period=period, day="2026-11-25").spend_pico == ceiling_pico(unpriced) == 10 * 10**9
    assert store.read("watched", period=period, day="2026-11-25").spend_pico == 0
    assert store.read("watched", period=period, day="2026-11-25").day_tokens == 10


def test_daily_tokens_are_counted_fleet_wide_in_days_of_the_reporting_calendar(tmp_path: Path) -> None:
    # GIVEN two processes' guards on one SQLite store, days counted in Los Angeles
    team = Team(team_id="thrifty", limits=Limits(daily_tokens=300))
    clock = [datetime(2026, 11, 26, 7, 0, tzinfo=UTC)]  # 23:00 on the 25th in Los Angeles
    la = Calendar(timezone="America/Los_Angeles")
    a = _guard(SqliteSpendStore(tmp_path / "s.sqlite"), clock, calendar=la)
    b = _guard(SqliteSpendStore(tmp_path / "s.sqlite"), clock, calendar=la)
    # WHEN each lets through 150 tokens
    a.check(team)
    a.record(team, _event(input_tokens=100, output_tokens=50))
    b.check(team)
    b.record(team, _event(input_tokens=100, output_tokens=50))
    # THEN both refuse the next call until local midnight (08:00 UTC), a UTC day after it would have reset
    for guard in (a, b):
        with pytest.raises(Throttled) as refused:
            guard.check(team)
        assert refused.value.refusal_reason == "token_quota" and refused.value.retry_after == 3600
    clock[0] = datetime(2026, 11, 26, 8, 0, 1, tzinfo=UTC)
    a.check(team)


def test_an_unreachable_store_refuses_block_mode_and_serves_the_others() -> None:
    guard = _guard(Broken())
    with pytest.raises(ServiceUnavailable) as refused:
        guard.check(BLOCK)
    assert refused.value.status_code == 503 and "budget" in refused.value.message
    guard.check(ALERT)  # no read needed at all
    guard.check(Team(team_id="t", limits=Limits(daily_tokens=10)))  # served, unchecked
    guard.record(ALERT, _event())  # never raises; kept for the next add
    assert guard.status() | {"store": None} == guard.status() | {
        "store_errors": 3, "refused_store_unreachable": 1, "served_unchecked": 1, "pending_adds": 1, "store": None}


def test_a_failed_add_is_added_with_the_next_one(tmp_path: Path) -> None:
    store = MemorySpendStore()
    guard = _guard(store)
    real_add, calls = store.add, []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise SpendStoreError("busy")
        return real_add(*args, **kwargs)

    store.add = flaky  # type: ignore[method-assign]
    guard.record(BLOCK, _event())
    with pytest.raises(Throttled):  # this process's own check already counts what it could not add
        guard.check(Team(team_id="capped", monthly_budget_usd=Decimal("0.25"), budget_mode="block"))
    guard.record(BLOCK, _event())
    assert store.read("capped", period="2026-11-01", day="2026-11-25").spend_pico == USD // 2
    assert guard.status()["pending_adds"] == 0


def test_correction_sets_the_curated_figure_and_alerts_what_it_crosses() -> None:
    store, sink = MemorySpendStore(), Sink()
    store.add("capped", period="2026-11-01", day="2026-11-25", spend_pico=USD // 10, tokens=5)
    store.add("gone", period="2026-11-01", day="2026-11-25", spend_pico=7, tokens=5)
    period = Calendar().period(NOW)
    changes = correct_spend(store=store, calendar=Calendar(), period=period, totals={"capped": 9 * USD // 10},
                            teams=[BLOCK], alerts=sink)
    assert changes == [("capped", USD // 10, 9 * USD // 10), ("gone", 7, 0)]
    assert [a["threshold_pct"] for a in sink.alerts] == [50, 80]
    assert sink.alerts[0]["source"] == "transform correction"


def test_the_webhook_is_retried_with_backoff_off_the_request_path(tmp_path: Path) -> None:
    posted, waits, done = [], [], threading.Event()

    def post(url: str, body: bytes) -> None:
        posted.append(body)
        if len(posted) < 3:
            raise OSError("connection refused")
        done.set()

    sink = LocalAlerts(lake=Lake.open(tmp_path / "lake"), webhook="http://127.0.0.1:9/hook", post=post,
                       sleep=waits.append)
    sink.deliver({"team_id": "capped", "threshold_pct": 80, "period": "2026-11-01"})  # returns at once
    assert done.wait(5)
    sink.close()
    assert waits == [1.0, 2.0] and len(posted) == 3 and json.loads(posted[-1])["threshold_pct"] == 80
    assert read_alerts(Lake.open(tmp_path / "lake")) == [{"period": "2026-11-01", "team_id": "capped",
                                                          "threshold_pct": 80}]
    assert sink.status() | {"queued": 0} == {"delivered": 1, "failed": 0, "webhook_delivered": 1,
                                             "webhook_failed": 0, "queued": 0}


# --- HTTP: a real server, seed routes and /v1 alike -------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("budgets")
    registry = LocalTenantRegistry(tmp / "tenants.json")
    tiny = Team(team_id="tiny", monthly_budget_usd=Decimal("0.0000001"), budget_mode="block")
    keys = {}
    for team in (tiny, Team(team_id="open", monthly_budget_usd=Decimal(100), limits=Limits(daily_tokens=10**6))):
        registry.put_team(team)
        keys[team.team_id] = registry.create_key(team.team_id)[1]
    lake = Lake.open(tmp / "lake")
    emitter = local_emitter(lake=lake, flush_interval=0.2)
    app = create_app(registry=registry, providers=build_router(upstream="simulator"), emitter=emitter,
                     longpoll=MemoryLongPollStore(), spend=SqliteSpendStore(tmp / "tenants.spend.sqlite"),
                     alerts=LocalAlerts(lake=lake), pricer=GatewayPricer(catalog=load_catalog(lake=None)))
    handle = start_background(app=app)
    try:
        yield {"url": handle.url, "keys": keys, "lake": lake, "emitter": emitter}
    finally:
        handle.stop()
        emitter.close(timeout=10)


MODEL = "amazon.nova-micro-v1:0"


def _v1(served: dict[str, Any], team: str) -> requests.Response:
    return requests.post(f"{served['url']}/v1/chat/completions", timeout=10,
                         headers={"Authorization": f"Bearer {served['keys'][team]}"},
                         json={"model": MODEL, "messages": [{"role": "user", "content": "hello there"}]})


def _seed(served: dict[str, Any], team: str) -> requests.Response:
    return requests.post(f"{served['url']}/invoke_model?model_id={MODEL}", json={"inputs": "hello"}, timeout=10,
                         headers={"x-api-key": served["keys"][team], "team_id": team})


def test_a_budget_refusal_is_429_json_on_both_apis_and_still_one_event(served: dict[str, Any]) -> None:
    first = _v1(served, "tiny")  # spend 0 < budget: admitted, and over the budget once it is counted
    assert first.status_code == 200
    seed, v1 = _seed(served, "tiny"), _v1(served, "tiny")
    assert seed.status_code == v1.status_code == 429
    assert int(seed.headers["Retry-After"]) > 0
    body, error = seed.json(), v1.json()["error"]
    for shown in (body, error):
        assert shown["budget_usd"] == "0.0000001" and Decimal(shown["spend_usd"]) > Decimal("0.0000001")
        assert shown["period"] and shown["resets_at"].endswith("Z") and "monthly budget" in shown["message"]
    assert error["type"] == "rate_limit_error" and body["type"] == "rate_limit_error"
    assert served["emitter"].flush(timeout=10)
    events = {e["request_id"]: e for e in _events(served["lake"])}
    for refused in (seed, v1):
        event = events[refused.headers["x-request-id"]]
        assert (event["status"], event["refusal_reason"], event["http_status"]) == ("throttled", "budget", 429)
    assert [a["threshold_pct"] for a in read_alerts(served["lake"]) if a["team_id"] == "tiny"] == [50, 80, 100]


def test_usage_says_the_period_calendar_spend_budget_and_daily_tokens(served: dict[str, Any]) -> None:
    assert _v1(served, "open").status_code == 200
    v1 = requests.get(f"{served['url']}/v1/usage", timeout=10,
                      headers={"Authorization": f"Bearer {served['keys']['open']}"})
    seed = requests.get(f"{served['url']}/usage", timeout=10, headers={"x-api-key": served["keys"]["open"]})
    assert v1.status_code == seed.status_code == 200
    usage = v1.json()
    assert usage == seed.json()
    assert "spend_store" not in usage  # where the counters are is the operator's business, not the tenant's
    assert usage["calendar"] == {"timezone": "UTC", "fiscal_month_start_day": 1}
    assert usage["budget_usd"] == "100" and usage["budget_mode"] == "alert" and usage["alert_at"] == [50, 80, 100]
    assert Decimal(usage["remaining_usd"]) == 100 - Decimal(usage["spend_usd"]) and Decimal(usage["spend_usd"]) > 0
    assert usage["thresholds_crossed"] == [] and usage["requests"] == 1
    assert usage["daily_tokens_used"] > 0 and usage["daily_tokens_limit"] == 10**6
    assert usage["period"] == datetime.now(UTC).strftime("%Y-%m-01")
    assert requests.get(f"{served['url']}/v1/usage", timeout=10).status_code == 401
    assert requests.get(f"{served['url']}/usage", timeout=10,
                        headers={"x-api-key": served["keys"]["open"], "team_id": "tiny"}).status_code == 403


def _events(lake: Lake) -> list[dict[str, Any]]:
    return [r for p in lake.list_files("raw/usage_events") for r in pq.read_table(p).to_pylist()]


# --- the command line -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "flag"), [
    (["--monthly-budget", "-5"], "--monthly-budget"), (["--monthly-budget", "lots"], "--monthly-budget"),
    (["--monthly-budget", "1E-13"], "--monthly-budget"), (["--monthly-budget", "1e400"], "--monthly-budget"),
    (["--alert-at", "0,80"], "--alert-at"), (["--alert-at", "50,1001"], "--alert-at"),
    (["--alert-at", "fifty"], "--alert-at"), (["--budget-mode", "hard"], "--budget-mode"),
])
def test_bad_budget_input_exits_2_naming_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   args: list[str], flag: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["tenants", "add", "t", "--tenants", str(tmp_path / "t.json"), *args])
    assert exited.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


def test_tenants_add_stores_the_settings_and_budget_show_prints_the_store(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    tenants, lake = tmp_path / "tenants.json", tmp_path / "lake"
    assert main(["tenants", "add", "ops", "--tenants", str(tenants), "--lake", str(lake), "--monthly-budget", "10",
                 "--budget-mode", "block", "--alert-at", "90,25"]) == 0
    team = LocalTenantRegistry(tenants).get_team("ops")
    assert (team.budget_mode, team.alert_at, team.monthly_budget_usd) == ("block", (25, 90), Decimal(10))
    assert main(["tenants", "add", "ops", "--tenants", str(tenants), "--lake", str(lake), "--rps", "5"]) == 0
    assert LocalTenantRegistry(tenants).get_team("ops").budget_mode == "block"  # kept when not given
    now = datetime.now(UTC)
    calendar = Calendar()
    store = SqliteSpendStore(tmp_path / "tenants.spend.sqlite")
    store.add("ops", period=calendar.period(now).key, day=calendar.day(now).key, spend_pico=3 * USD, tokens=42)
    capsys.readouterr()
    assert main(["budget", "show", "ops", "--tenants", str(tenants), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["spend_usd"], shown["remaining_usd"], shown["thresholds_crossed"]) == ("3", "7", [25])
    assert shown["daily_tokens_used"] == 42 and shown["budget_mode"] == "block"
    assert main(["budget", "show", "--tenants", str(tenants)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("team_id\tperiod\tbudget_mode\tspend_usd") and table[1].startswith("ops\t")
    assert main(["budget", "show", "nobody", "--tenants", str(tenants)]) == 1


def test_the_curated_figure_is_counted_as_the_gateway_counts(tmp_path: Path) -> None:
    # GIVEN the fixture lake (a SageMaker endpoint without a price among priced models), fiscal months in UTC
    facts = build_fixture_lake(tmp_path / "lake", close=False)
    period = Calendar().period_of_day(date(2026, 11, 20))
    ids = sorted({r["team_id"] for r in facts.usage_cost})
    teams = [Team(team_id=ids[0], budget_mode="block"), *(Team(team_id=t) for t in ids[1:])]
    # WHEN the correction's totals are read from usage_local
    totals = curated_spend(lake=Lake.open(facts.root), config=ReportingConfig(), period=period, teams=teams)
    # THEN alert-mode teams count the priced part, the block-mode team its unpriced events at the ceiling
    rows = [r for r in facts.usage_cost if r["event_time"].date().strftime("%Y-%m") == "2026-11"]
    for team in teams:
        mine = [r for r in rows if r["team_id"] == team.team_id]
        priced = [int((r["total_cost"] or 0) * USD) for r in mine]
        if team.budget_mode == "block":
            expected = sum(p if r["priced"] else max(p, ceiling_pico(r)) for p, r in zip(priced, mine, strict=True))
            assert any(not r["priced"] for r in mine)  # the case is really exercised
        else:
            expected = sum(priced)
        assert totals[team.team_id] == expected


def test_calls_in_flight_at_the_crossing_are_the_whole_overshoot() -> None:
    # GIVEN a $1 block-mode budget with $0.90 spent, and 8 calls of up to $0.25 admitted before any of them finished
    store = MemorySpendStore()
    store.add("capped", period="2026-11-01", day="2026-11-25", spend_pico=9 * USD // 10, tokens=0)
    guards = [_guard(store) for _ in range(2)]  # two processes
    in_flight = 8
    for i in range(in_flight):
        guards[i % 2].check(BLOCK)  # each reads $0.90 < $1: admitted
    # WHEN they finish (the first crosses the budget, the seven others were already running)
    for i in range(in_flight):
        guards[i % 2].record(BLOCK, _event(cost="0.25"))
    # THEN the overshoot is under in_flight × the largest call, and no call that starts now is admitted
    spend = store.read("capped", period="2026-11-01", day="2026-11-25").spend_pico
    assert 0 < spend - USD < in_flight * USD // 4
    for guard in guards:
        with pytest.raises(Throttled):
            guard.check(BLOCK)


class _FailsOnBoom(SimulatorProvider):
    """The labelled simulator, refusing one input as a provider refuses an over-long one."""

    async def invoke(self, request: ModelRequest) -> ModelResult:
        if request.prompt == "BOOM":
            raise UpstreamClientError("input is too long for the model")
        return await super().invoke(request)


def test_embeddings_that_fail_part_way_bill_the_inputs_already_embedded(tmp_path: Path) -> None:
    # GIVEN a block-mode team and a provider that refuses the last of 20 inputs
    registry = LocalTenantRegistry(tmp_path / "tenants.json")
    registry.put_team(Team(team_id="capped", monthly_budget_usd=Decimal("0.0001"), budget_mode="block"))
    secret = registry.create_key("capped")[1]
    lake = Lake.open(tmp_path / "lake")
    emitter = local_emitter(lake=lake, flush_interval=0.2)
    app = create_app(registry=registry, providers=ProviderRouter(default=_FailsOnBoom()), emitter=emitter,
                     longpoll=MemoryLongPollStore(), spend=SqliteSpendStore(tmp_path / "tenants.spend.sqlite"),
                     alerts=LocalAlerts(lake=lake), pricer=GatewayPricer(catalog=load_catalog(lake=None)))
    handle = start_background(app=app)
    try:
        inputs = ["x" * 4000] * 19 + ["BOOM"]
        first = requests.post(f"{handle.url}/v1/embeddings", headers={"Authorization": f"Bearer {secret}"},
                              json={"model": "amazon.titan-embed-text-v2:0", "input": inputs}, timeout=10)
        second = requests.post(f"{handle.url}/v1/embeddings", headers={"Authorization": f"Bearer {secret}"},
                               json={"model": "amazon.titan-embed-text-v2:0", "input": inputs[:1]}, timeout=10)
        assert emitter.flush(timeout=10)
    finally:
        handle.stop()
        emitter.close(timeout=10)
    # THEN the failed call's event carries the 19 embedded inputs and their cost, and that spend blocks the next call
    assert first.status_code == 400 and second.status_code == 429
    (event,) = [e for e in _events(lake) if e["request_id"] == first.headers["x-request-id"]]
    assert event["status"] == "client_error" and event["input_tokens"] == 19 * 1000
    assert Decimal(event["cost_usd"]) > 0


def test_a_backfill_of_an_early_day_does_not_drop_later_untransformed_days(tmp_path: Path) -> None:
    # GIVEN raw events on Nov 3 (transformed) and on Nov 25 (not yet), and a raw file landing on Nov 3 after its run
    lake = Lake.open(tmp_path / "lake")
    for day in ("2026-11-03", "2026-11-25"):
        lake.write_bytes(b"x", "raw/usage_events", f"dt={day}", "hour=09", "a.parquet")
    lake.write_bytes(b"{}", "runs/transform", "dt=2026-11-03", "run-1.json")
    period = Calendar("UTC", 1).period(datetime(2026, 11, 3, tzinfo=UTC))
    # THEN the correction's check sees the whole month, whatever day the run ended on
    assert untransformed_days(lake, period, last=date(2026, 11, 3)) == [date(2026, 11, 25)]
    # AND a day whose raw files changed after its latest run counts as untransformed too
    late = lake.write_bytes(b"y", "raw/usage_events", "dt=2026-11-03", "hour=10", "b.parquet")
    os.utime(late, (time.time() + 5, time.time() + 5))
    assert untransformed_days(lake, period, last=date(2026, 11, 3)) == [date(2026, 11, 3), date(2026, 11, 25)]


def test_a_store_that_reads_but_does_not_write_refuses_block_mode(tmp_path: Path) -> None:
    # GIVEN a store whose writes fail (a lock held past the busy timeout, throttled writes) while reads work
    store = MemorySpendStore()
    guard = _guard(store)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise SpendStoreError("cannot update (database is locked)")

    store.add = refuse  # type: ignore[method-assign]
    team = Team(team_id="capped", monthly_budget_usd=Decimal("100"), budget_mode="block")
    guard.check(team)
    guard.record(team, _event())  # its spend could not be written
    # THEN the next call of that block-mode team is refused (fail closed) instead of reading a stale figure
    with pytest.raises(ServiceUnavailable):
        guard.check(team)
    # AND an alert-mode team is still served
    guard.check(Team(team_id="open", monthly_budget_usd=Decimal("100")))
