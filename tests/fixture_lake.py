"""A small curated lake with known answers, shared by the SQL, dashboard and export tests.

``build_fixture_lake(root=...)`` writes ``curated/usage_cost`` and ``curated/team_model_daily`` (consistent with each
other), ``quarantine/usage_events`` and ``reference/teams`` under ``root``, and returns :class:`FixtureFacts`: the rows
it wrote plus expected totals computed from those rows in Python ``Decimal`` (never typed in by hand).

What is in it (deterministic, seeded): 3 teams × 4 models × 40 UTC days (2026-11-05 … 2026-12-14, across the
November/December boundary); ``team-west`` works in the evening in UTC−8 (America/Los_Angeles, no DST change in that
range), so its traffic lands on the next UTC day; a SageMaker endpoint that has no price (``priced`` false, the costs
of what it used NULL, ``unpriced_dimensions`` listing them); an image model (``image_count``, ``image_cost``); cache
reads and writes on the Claude model; throttled requests (zero counts, zero cost); a fourth registered team,
``team-idle``, with a budget and no traffic.
"""

from __future__ import annotations

import random
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from common.constants import CURATED_TEAM_MODEL_DAILY, CURATED_USAGE_COST, MONEY_SCALE, QUARANTINE_EVENTS
from common.contracts import (
    COST_COLUMNS,
    COST_OF,
    COUNT_FIELDS,
    UNITS,
    Team,
    curated_arrow_schema,
    quarantine_arrow_schema,
)
from common.lake import Lake
from finance.allocation import Rules
from finance.chargeback import compute
from finance.chargeback import store as store_chargeback
from finance.cur import import_export
from finance.reconcile import reconcile
from finance.reconcile import store as store_reconciliation
from modelmeter.simulated_bill import Deviations, simulate_period, write_cur
from pricing_catalog import load_catalog
from sql.reference import write_teams

FIRST_DAY = date(2026, 11, 5)
CLOSED_PERIOD = "2026-11"
DAYS = 40
PRICE_VERSION = "fixture-2026-11"
WEST_TEAM = "team-west"
WEST_TIMEZONE = "America/Los_Angeles"
IDLE_TEAM = "team-idle"
QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)

TEAMS: tuple[Team, ...] = (
    Team(team_id="team-alpha", cost_center="CC-1001", monthly_budget_usd=Decimal("5.00"), business_unit="research"),
    Team(team_id="team-beta", cost_center="CC-2002", monthly_budget_usd=None, business_unit="support"),
    Team(team_id=WEST_TEAM, cost_center="CC-3003", monthly_budget_usd=Decimal("1.00"), business_unit="sales"),
    Team(team_id=IDLE_TEAM, cost_center="CC-1001", monthly_budget_usd=Decimal("1.00"), business_unit="research"),
)


@dataclass(frozen=True)
class FixtureModel:
    model_id: str
    provider: str
    operation: str
    #: USD per 1 M units for tokens, per image for ``image_count``; empty = no price (rows unpriced).
    prices: dict[str, Decimal]


MODELS: tuple[FixtureModel, ...] = (
    FixtureModel("anthropic.claude-3-5-sonnet-20240620-v1:0", "bedrock", "chat",
                 {"input_tokens": Decimal("3.00"), "output_tokens": Decimal("15.00"),
                  "cache_read_input_tokens": Decimal("0.30"), "cache_write_input_tokens": Decimal("3.75")}),
    FixtureModel("meta.llama3-1-70b-instruct-v1:0", "bedrock", "chat",
                 {"input_tokens": Decimal("0.72"), "output_tokens": Decimal("0.72")}),
    FixtureModel("amazon.titan-image-generator-v2:0", "bedrock", "image", {"image_count": Decimal("0.008")}),
    FixtureModel("support-bot-endpoint", "sagemaker", "text", {}),
)
IMAGE_MODEL = MODELS[2].model_id
UNPRICED_MODEL = MODELS[3].model_id


@dataclass(frozen=True)
class FixtureFacts:
    """What the fixture lake holds, and expected answers derived from it.

    Attributes:
        root: the lake folder (for an ``s3://`` lake: the bucket/prefix path inside S3).
        uri: the lake as ``Lake.open`` takes it (a folder or an ``s3://`` URI).
        usage_cost: the ``usage_cost`` rows written (dicts; ``event_time`` aware UTC datetimes, money ``Decimal``).
        team_model_daily: the ``team_model_daily`` rows written.
        quarantine: the quarantine rows written.
        teams: the registered teams (``reference/teams``).
        first_day, last_day: first and last UTC ``usage_date``.
    """

    root: Path
    uri: str
    usage_cost: tuple[dict[str, Any], ...]
    team_model_daily: tuple[dict[str, Any], ...]
    quarantine: tuple[dict[str, Any], ...]
    teams: tuple[Team, ...]
    first_day: date
    last_day: date

    @property
    def priced_rows(self) -> tuple[dict[str, Any], ...]:
        return tuple(r for r in self.usage_cost if r["priced"])

    @property
    def total_cost(self) -> Decimal:
        """Sum of ``total_cost`` over every priced row."""
        return sum((r["total_cost"] for r in self.priced_rows), Decimal(0))

    @property
    def invocations(self) -> int:
        return len(self.usage_cost)

    @property
    def unpriced_invocations(self) -> int:
        return sum(1 for r in self.usage_cost if not r["priced"])

    def cost_by_team(self) -> dict[str, Decimal]:
        return self.aggregate(lambda r: r["team_id"])

    def cost_by_model(self) -> dict[str, Decimal]:
        return self.aggregate(lambda r: r["model_id"])

    def aggregate(self, key: Callable[[dict[str, Any]], Hashable], *, column: str = "total_cost",
                  rows: Iterable[dict[str, Any]] | None = None) -> dict[Hashable, Any]:
        """Sum ``column`` of the priced rows (or of ``rows``) grouped by ``key(row)``; NULL costs are skipped."""
        out: dict[Hashable, Any] = {}
        for r in self.priced_rows if rows is None else rows:
            value = r[column]
            if value is None:
                continue
            k = key(r)
            out[k] = out.get(k, 0) + value
        return out

    @staticmethod
    def local_day(row: dict[str, Any], timezone: str) -> date:
        """The day of ``row``'s ``event_time`` in ``timezone``."""
        return row["event_time"].astimezone(ZoneInfo(timezone)).date()

    @staticmethod
    def fiscal_month_start(day: date, start_day: int) -> date:
        """First day of the fiscal month holding ``day`` when fiscal months start on ``start_day``."""
        if day.day >= start_day:
            return day.replace(day=start_day)
        previous = day.replace(day=1) - timedelta(days=1)
        return previous.replace(day=start_day)

    def budget_of(self, team_id: str) -> Decimal | None:
        return next((t.monthly_budget_usd for t in self.teams if t.team_id == team_id), None)

    def cost_center_of(self, team_id: str) -> str | None:
        return next((t.cost_center for t in self.teams if t.team_id == team_id), None)


def _money(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM)


def _event_time(rng: random.Random, team_id: str, day: date) -> datetime:
    """A time on ``day``: office hours in UTC for most teams, the evening in UTC−8 for the west team."""
    ms = rng.randrange(0, 3_600_000)
    if team_id == WEST_TEAM:
        local = datetime.combine(day, time(rng.randrange(17, 24)), tzinfo=ZoneInfo(WEST_TIMEZONE))
        return (local + timedelta(milliseconds=ms)).astimezone(UTC)
    return datetime.combine(day, time(rng.randrange(8, 21)), tzinfo=UTC) + timedelta(milliseconds=ms)


def _counts(rng: random.Random, model: FixtureModel, status: str) -> dict[str, int]:
    counts = dict.fromkeys(COUNT_FIELDS, 0)
    if status != "ok":
        return counts
    if model.operation == "image":
        counts["image_count"] = rng.randint(1, 4)
        return counts
    counts["input_tokens"] = rng.randint(100, 5000)
    counts["output_tokens"] = rng.randint(20, 2000)
    if model.model_id.startswith("anthropic.") and rng.random() < 0.5:
        counts["cache_read_input_tokens"] = rng.randint(1000, 20000)
        counts["cache_write_input_tokens"] = rng.choice((0, rng.randint(500, 4000)))
    return counts


def _costs(model: FixtureModel, counts: dict[str, int]) -> dict[str, Any]:
    if not model.prices:  # as the transform writes a model with no price: what it used NULL, the rest 0
        used = [u for u in UNITS if counts[u.count_field]]
        return {"price_version": None, "priced": False,
                **{u.cost_column: None if counts[u.count_field] else Decimal(0) for u in UNITS}, "total_cost": None,
                "unpriced_dimensions": ",".join(u.dimension for u in used)}
    costs: dict[str, Any] = {"price_version": PRICE_VERSION, "priced": True, "unpriced_dimensions": None}
    for cost_col, count_col in COST_OF.items():
        price = model.prices.get(count_col, Decimal(0))
        per = 1 if count_col == "image_count" else 1_000_000
        costs[cost_col] = _money(counts[count_col] * price / per)
    costs["total_cost"] = sum((costs[c] for c in COST_OF), Decimal(0))
    return costs


def _usage_rows(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for offset in range(DAYS):
        for team in TEAMS:
            if team.team_id == IDLE_TEAM:
                continue
            # the west team's evenings: local days one earlier, so their UTC dates fall inside the range
            day = FIRST_DAY + timedelta(days=offset - (1 if team.team_id == WEST_TEAM else 0))
            for model in MODELS:
                for _ in range(rng.randint(0, 3)):
                    status = "throttled" if rng.random() < 0.05 else "ok"
                    counts = _counts(rng, model, status)
                    event_time = _event_time(rng, team.team_id, day)
                    rows.append({
                        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                        "event_time": event_time, "usage_date": event_time.date(), "team_id": team.team_id,
                        "api_key_id": f"key-{team.team_id}", "business_unit": team.business_unit,
                        "provider": model.provider, "region": "us-east-1", "model_id": model.model_id,
                        "operation": model.operation, "status": status, "service_tier": "on_demand",
                        "refusal_reason": "rate_limit" if status == "throttled" else None,
                        **counts, **_costs(model, counts),
                    })
    rows.sort(key=lambda r: (r["event_time"], r["event_id"]))
    return rows


def _daily_rows(usage: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[date, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in usage:
        groups[(r["usage_date"], r["team_id"], r["model_id"])].append(r)
    out = []
    for (usage_date, team_id, model_id), rows in sorted(groups.items()):
        priced = [r for r in rows if r["priced"]]
        out.append({
            "usage_date": usage_date, "team_id": team_id, "model_id": model_id, "invocations": len(rows),
            **{c: sum(r[c] for r in rows) for c in COUNT_FIELDS},
            **{c: sum((r[c] for r in rows if r[c] is not None), Decimal(0)).quantize(QUANTUM) for c in COST_COLUMNS},
            "unpriced_invocations": len(rows) - len(priced),
            "price_version": PRICE_VERSION if priced else None,
            "unpriced_dimensions": None if len(priced) == len(rows) else ",".join(
                u.dimension for u in UNITS if any(r[u.count_field] and r[u.cost_column] is None for r in rows)),
        })
    return out


def _quarantine_rows() -> list[dict[str, Any]]:
    at = datetime(2026, 11, 10, 6, 0, tzinfo=UTC)
    specs = [
        ("e-q1", datetime(2026, 11, 9, 12, 0, tzinfo=UTC), "team-alpha", "input_tokens -5 is negative", "transform"),
        ("e-q2", datetime(2026, 11, 9, 13, 0, tzinfo=UTC), "team-beta", "input_tokens -5 is negative", "transform"),
        ("e-q3", datetime(2026, 11, 9, 14, 0, tzinfo=UTC), None, "team_id is missing", "ingest"),
        (None, None, None, "not valid JSON: Expecting value at column 1", "ingest"),
        ("e-q5", datetime(2026, 12, 1, 9, 30, tzinfo=UTC), "team-west", "unknown schema_version 2", "ingest"),
    ]
    return [{"event_id": eid, "event_time": ts, "team_id": team, "reason": reason, "stage": stage,
             "source_file": "events-fixture.jsonl", "source_line": line, "raw": f'{{"event_id": "{eid}"}}',
             "quarantined_at": at + timedelta(minutes=line)}
            for line, (eid, ts, team, reason, stage) in enumerate(specs, start=1)]


def _write_partitioned(lake: Lake, rows: list[dict[str, Any]], schema: pa.Schema, prefix: str,
                       day_of: Callable[[dict[str, Any]], date]) -> None:
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_day[day_of(r)].append(r)
    for day, part in sorted(by_day.items()):
        table = pa.Table.from_pylist([{n: r[n] for n in schema.names} for r in part], schema=schema)
        lake.write_parquet(table, prefix, f"dt={day.isoformat()}", "part-00000.parquet")


def close_november(lake: Lake) -> None:
    """The month-end close of 2026-11 on a SIMULATED bill of the lake's traffic (a discount on the Claude model,
    bypassed Llama usage, a credit, two provisioned-throughput hours): its reconciliation and chargeback version 1."""
    catalog = load_catalog(lake=lake)
    deviations = Deviations(discounted_model=MODELS[0].model_id, bypass_model=MODELS[1].model_id,
                            credit=Decimal("-1.50"), provisioned_hours=2, provisioned_rate=Decimal("0.75"))
    lines = simulate_period(lake=lake, period=CLOSED_PERIOD, catalog=catalog, deviations=deviations)
    with tempfile.TemporaryDirectory() as tmp:
        import_export(lake=lake, paths=[str(write_cur(lines, Path(tmp) / "export-00001.parquet"))])
    rec = reconcile(lake=lake, period=CLOSED_PERIOD, catalog=catalog)
    store_reconciliation(lake=lake, reconciliation=rec)
    store_chargeback(lake=lake, chargeback=compute(rec=rec, rules=Rules(), teams=list(TEAMS), version=1))


def build_fixture_lake(root: Path | str, *, seed: int = 20261105, close: bool = True) -> FixtureFacts:
    """Write the fixture lake under ``root`` (a folder or an ``s3://`` URI) and return what it holds; with
    ``close``, also November's month-end close (:func:`close_november`)."""
    lake = Lake.open(root)
    rng = random.Random(seed)
    usage = _usage_rows(rng)
    daily = _daily_rows(usage)
    quarantine = _quarantine_rows()
    _write_partitioned(lake, usage, curated_arrow_schema("usage_cost"), CURATED_USAGE_COST, lambda r: r["usage_date"])
    _write_partitioned(lake, daily, curated_arrow_schema("team_model_daily"), CURATED_TEAM_MODEL_DAILY,
                       lambda r: r["usage_date"])
    _write_partitioned(lake, quarantine, quarantine_arrow_schema(), QUARANTINE_EVENTS,
                       lambda r: (r["event_time"] or r["quarantined_at"]).date())
    write_teams(lake=lake, teams=list(TEAMS))
    if close:
        close_november(lake)
    return FixtureFacts(root=Path(lake.base), uri=lake.uri, usage_cost=tuple(usage), team_model_daily=tuple(daily),
                        quarantine=tuple(quarantine), teams=TEAMS,
                        first_day=min(r["usage_date"] for r in usage), last_day=max(r["usage_date"] for r in usage))
