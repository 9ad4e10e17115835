"""The scheduled transform in AWS Lambda: yesterday and today (UTC), or the days named in the event.

EventBridge invokes it on the unit's schedule (``infra/constructs/transform_job.py``); re-running a day replaces
that day's partitions, so the hourly overlap with yesterday is safe and catches late events. Invoke it by hand with
``{"date_from": "2026-11-20", "date_to": "2026-11-24"}`` (optionally ``"price_version"``) to backfill.

Before transforming, the run refreshes ``reference/teams`` (cost centres, budgets, business units: what the views
join) from the tenant table named by ``MODELMETER_TENANT_TABLE``, when set. In AWS that table is the registry and
the source of truth (the deploy only seeds it; ``modelmeter tenants add --tenants dynamodb://TABLE`` changes it), so
the file is rewritten from it whole, with one row per dated cost-centre assignment of each team: a move made with
``--from DAY`` reaches the views on the next run, and days before it keep the cost centre in force then.

Each run emits ``CuratedEvents`` and ``QuarantinedEvents`` (namespace ``modelmeter``, dimensions ``service`` and
``business_unit``) through Powertools; the quarantine-rate alarm divides them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from common.constants import (
    ENV_BUSINESS_UNIT,
    ENV_LAKE,
    ENV_TENANT_TABLE,
    ENV_TRANSFORM_ENGINE,
    METRIC_CURATED_EVENTS,
    METRIC_QUARANTINED_EVENTS,
    METRICS_NAMESPACE,
    SERVICE_TRANSFORM,
)
from common.lake import Lake
from ingest.dynamo import DynamoTenantRegistry
from sql.reference import write_teams
from transforms.run import transform_range

SERVICE = SERVICE_TRANSFORM
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)

#: Longest range one invocation may transform (a Lambda run lasts at most 15 minutes; backfill in slices).
MAX_DAYS = 31


class TransformEventError(ValueError):
    """The invocation event cannot be turned into a range of days; the message says what to send instead."""


def _parse_day(event: Mapping[str, Any], key: str) -> date:
    value = event[key]
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise TransformEventError(f"{key} {value!r} is not a date: write YYYY-MM-DD") from None


def days_for(event: Mapping[str, Any] | None, *, now: datetime) -> tuple[date, date]:
    """The first and last day (inclusive) to transform for an invocation event.

    A scheduled event (or any event without ``date_from``/``date_to``) means yesterday and today in UTC.

    Raises:
        TransformEventError: one of the dates is given without the other, malformed, reversed or too long a range.
    """
    event = event if isinstance(event, Mapping) else {}
    given = [k for k in ("date_from", "date_to") if event.get(k) is not None]
    if not given:
        today = now.astimezone(UTC).date()
        return today - timedelta(days=1), today
    if len(given) == 1:
        missing = "date_to" if given == ["date_from"] else "date_from"
        raise TransformEventError(f"{given[0]} is given without {missing}: send both, as YYYY-MM-DD")
    date_from, date_to = _parse_day(event, "date_from"), _parse_day(event, "date_to")
    if date_to < date_from:
        raise TransformEventError(f"date_to {date_to} is before date_from {date_from}")
    if (date_to - date_from).days + 1 > MAX_DAYS:
        raise TransformEventError(f"{date_from}..{date_to} is more than {MAX_DAYS} days: invoke once per slice")
    return date_from, date_to


def _totals(manifests: list[Any]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for manifest in manifests:
        for name, count in manifest.counts.items():
            totals[name] = totals.get(name, 0) + int(count)
    return totals


def _refresh_teams(lake: Lake, table_name: str | None) -> int | None:
    """Rewrite ``reference/teams`` from the DynamoDB tenant table (each team's dated cost-centre history included);
    the number of teams, or None without a table."""
    if not table_name:
        return None
    teams = DynamoTenantRegistry(table_name=table_name).list_teams()
    write_teams(lake=lake, teams=teams)
    return len(teams)


def run(event: Mapping[str, Any] | None, *, environ: Mapping[str, str], now: datetime | None = None
        ) -> dict[str, Any]:
    """Transform the event's days on the lake named by ``MODELMETER_LAKE``; return what was done."""
    engine = environ.get(ENV_TRANSFORM_ENGINE) or "duckdb"
    if engine != "duckdb":
        # infra grants the Athena workgroup to this function, but transforms.run has only the DuckDB engine today.
        raise TransformEventError(f"{ENV_TRANSFORM_ENGINE}={engine!r}: this build runs the duckdb engine only")
    lake_uri = environ.get(ENV_LAKE)
    if not lake_uri:
        raise TransformEventError(f"{ENV_LAKE} is not set: the function needs the lake's s3:// URI")
    date_from, date_to = days_for(event, now=now or datetime.now(UTC))
    price_version = (event or {}).get("price_version") if isinstance(event, Mapping) else None


    lake = Lake.open(lake_uri)
    teams = _refresh_teams(lake, environ.get(ENV_TENANT_TABLE))
    manifests = transform_range(lake=lake, date_from=date_from, date_to=date_to, price_version=price_version)
    totals = _totals(manifests)
    return {"date_from": date_from.isoformat(), "date_to": date_to.isoformat(),
            "days": [m.day for m in manifests], "price_version": manifests[0].price_version if manifests else None,
            "counts": totals, "teams": teams}


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (``transforms.lambda_handler.handler``)."""
    metrics.set_default_dimensions(business_unit=os.environ.get(ENV_BUSINESS_UNIT) or "default")
    result = run(event, environ=os.environ)
    metrics.add_metric(name=METRIC_CURATED_EVENTS, unit=MetricUnit.Count, value=result["counts"].get("written", 0))
    metrics.add_metric(name=METRIC_QUARANTINED_EVENTS, unit=MetricUnit.Count,
                       value=result["counts"].get("quarantined", 0))
    logger.info("transform finished", extra=result)
    return result
