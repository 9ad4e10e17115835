"""The scheduled transform in AWS Lambda: yesterday and today (UTC) and the late days, or the days named in the event.

EventBridge invokes it on the unit's schedule (``infra/constructs/transform_job.py``); re-running a day replaces
that day's partitions, so the hourly overlap with yesterday is safe. Events that land later than that (Firehose
retries for up to 24 hours, a partner's batch, a restored spool) are found by :func:`transforms.late.stale_days`:
each scheduled run also transforms every day of the look-back (``MODELMETER_TRANSFORM_LOOKBACK_DAYS``, default 35)
whose raw files changed since its last run, oldest first, at most ``MODELMETER_TRANSFORM_MAX_LATE_DAYS`` (default 7)
per run; the rest are logged and left for the next run. A late day is transformed at its last run's catalog version
(late data does not re-price a day), and a day whose re-run would drop events (raw files its last run read are
gone) is set aside and logged, never transformed by the schedule. Invoke it by hand with
``{"date_from": "2026-11-20", "date_to": "2026-11-24"}`` (optionally ``"price_version"``) to backfill: exactly
those days.

Before transforming, the run refreshes ``reference/teams`` (cost centres, budgets, business units: what the views
join) from the tenant table named by ``MODELMETER_TENANT_TABLE``, when set. In AWS that table is the registry and
the source of truth (the deploy only seeds it; ``modelmeter tenants add --tenants dynamodb://TABLE`` changes it), so
the file is rewritten from it whole, with one row per dated cost-centre assignment of each team: a move made with
``--from DAY`` reaches the views on the next run, and days before it keep the cost centre in force then.

After transforming, the run corrects the gateway's fleet-wide spend counters (``MODELMETER_SPEND_TABLE``, the
unit's DynamoDB counters table, when set): each team's month-to-date spend of every fiscal month the days touch is set
to the curated figure (``transforms.spend_correction``, the same computation as after ``modelmeter transform``), and
the thresholds a corrected figure crosses are alerted once, through the unit's SNS topic and EventBridge
(``MODELMETER_ALERT_TOPIC_ARN``, ``MODELMETER_ALERT_EVENT_BUS``), flushed before the run returns. The teams (budgets,
modes, thresholds) are the tenant table's, as just refreshed. If the counters cannot be written or an alert cannot be
delivered, the run fails after its metrics are emitted (the days are transformed; the transform's failure alarm fires,
Lambda retries the run, and an undelivered alert is in the log whole).

Each run emits ``CuratedEvents`` and ``QuarantinedEvents`` (namespace ``modelmeter``, dimensions ``service`` and
``business_unit``) through Powertools; the quarantine-rate alarm divides them. A failed correction also emits
``SpendStoreErrors`` or ``BudgetAlertDeliveryFailures`` (``service`` ``modelmeter-transform``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from common.constants import (
    ENV_ALERT_EVENT_BUS,
    ENV_ALERT_TOPIC_ARN,
    ENV_BUSINESS_UNIT,
    ENV_LAKE,
    ENV_LOOKBACK_DAYS,
    ENV_MAX_LATE_DAYS,
    ENV_SPEND_TABLE,
    ENV_TENANT_TABLE,
    ENV_TRANSFORM_ENGINE,
    METRIC_ALERT_DELIVERY_FAILURES,
    METRIC_CURATED_EVENTS,
    METRIC_QUARANTINED_EVENTS,
    METRIC_SPEND_STORE_ERRORS,
    METRICS_NAMESPACE,
    SERVICE_TRANSFORM,
)
from common.contracts import Team
from common.lake import Lake
from ingest.alerts_aws import AwsAlerts
from ingest.dynamo import DynamoTenantRegistry
from ingest.spend import SpendStoreError
from ingest.spend_dynamo import DynamoSpendStore
from sql.config import ReportingConfig
from sql.reference import write_teams
from transforms.late import LatePlan, by_price_version, plan, stale_days
from transforms.run import days_between, transform_days, transform_range
from transforms.spend_correction import correct_after_run

SERVICE = SERVICE_TRANSFORM
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)

#: Longest range one invocation may transform (a Lambda run lasts at most 15 minutes; backfill in slices).
MAX_DAYS = 31
#: Seconds the run gives the budget alerts of its correction to reach SNS and EventBridge (retries included).
ALERT_FLUSH_SECONDS = 20.0
#: How many days back a scheduled run looks for late data, and how many late days it transforms at most (each is a
#: whole day's transform; the rest wait for the next run): ENV_LOOKBACK_DAYS and ENV_MAX_LATE_DAYS, defaults below.
DEFAULT_LOOKBACK_DAYS = 35
DEFAULT_MAX_LATE_DAYS = 7


class TransformEventError(ValueError):
    """The invocation event cannot be turned into a range of days; the message says what to send instead."""


class SpendCorrectionError(RuntimeError):
    """The days are transformed, but the spend counters could not be corrected or an alert could not be sent."""


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


def _setting(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise TransformEventError(f"{name}={value!r} is not a whole number of days (0 or more)")
    return number


def late_days(lake: Lake, *, today: date, environ: Mapping[str, str]) -> LatePlan:
    """The late days a scheduled run transforms besides yesterday and today: the stale days of the look-back
    before yesterday, oldest first, capped (see the module docstring)."""
    lookback = _setting(environ, ENV_LOOKBACK_DAYS, DEFAULT_LOOKBACK_DAYS)
    cap = _setting(environ, ENV_MAX_LATE_DAYS, DEFAULT_MAX_LATE_DAYS)
    first, last = today - timedelta(days=lookback), today - timedelta(days=2)
    if last < first:
        return LatePlan()
    return plan(stale_days(lake=lake, date_from=first, date_to=last), cap=cap)


def _log_late(late: LatePlan) -> None:
    for s in late.run:
        logger.info(f"late data: transforming {s.describe()}")
    for s in late.set_aside:
        logger.warning(f"late data set aside (a re-run would drop events; transform it by hand with date_from = "
                       f"date_to = {s.day}): {s.describe()}")
    if late.left:
        logger.warning(f"late data: {len(late.left)} more stale days left for the next run (the cap): "
                       f"{', '.join(str(s.day) for s in late.left)}")


def _transform_late(lake: Lake, late: LatePlan, price_version: str | None) -> list[Any]:
    _log_late(late)
    manifests: list[Any] = []
    groups = [(price_version, [s.day for s in late.run])] if price_version else by_price_version(late.run)
    for version, days in groups:
        if days:
            manifests += transform_days(lake=lake, days=days, price_version=version)
    return manifests


def _totals(manifests: list[Any]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for manifest in manifests:
        for name, count in manifest.counts.items():
            totals[name] = totals.get(name, 0) + int(count)
    return totals


def _refresh_teams(lake: Lake, table_name: str | None) -> list[Team] | None:
    """Rewrite ``reference/teams`` from the DynamoDB tenant table (each team's dated cost-centre history included);
    the teams, or None without a table."""
    if not table_name:
        return None
    teams = DynamoTenantRegistry(table_name=table_name).list_teams()
    write_teams(lake=lake, teams=teams)
    return teams


def _correct_spend(lake: Lake, *, teams: list[Team], days: list[date], environ: Mapping[str, str]
                   ) -> dict[str, Any] | None:
    """Correct the unit's spend counters from the curated tables and send the alerts that crosses; what was done
    (``error`` and the counts of failures when it could not), or None without ``MODELMETER_SPEND_TABLE``."""
    table = environ.get(ENV_SPEND_TABLE)
    if not table:
        return None
    topic, bus = environ.get(ENV_ALERT_TOPIC_ARN) or None, environ.get(ENV_ALERT_EVENT_BUS) or None
    alerts = AwsAlerts(topic_arn=topic, event_bus=bus) if topic or bus else None
    store = DynamoSpendStore(table_name=table)
    out: dict[str, Any] = {"store": store.location, "periods": [], "store_errors": 0, "alerts_undelivered": 0}
    try:
        config = ReportingConfig.from_env(environ)  # the gateway's calendar: the unit sets the same variables
    except ValueError as exc:
        out["error"] = f"budget counters not corrected: {exc}"
        return out
    try:
        corrections = correct_after_run(lake=lake, store=store, teams=teams, days=days, config=config,
                                        alerts=alerts)
        out["periods"] = [c.as_dict() for c in corrections]
        for c in corrections:
            logger.info(c.describe())
    except SpendStoreError as exc:
        out["error"] = f"budget counters not corrected: {exc}"
    finally:
        out["store_errors"] = store.take_errors()
        if alerts is not None:  # what the correction raised before a failure still goes out
            out["alerts_undelivered"] = alerts.flush(timeout=ALERT_FLUSH_SECONDS)
            out["alerts_delivered"] = alerts.counts["delivered"]
    if out["alerts_undelivered"] and "error" not in out:
        out["error"] = (f"{out['alerts_undelivered']} budget alert(s) of the correction could not be sent "
                        f"(logged whole above)")
    return out


def run(event: Mapping[str, Any] | None, *, environ: Mapping[str, str], now: datetime | None = None
        ) -> dict[str, Any]:
    """Transform the event's days on the lake named by ``MODELMETER_LAKE``; return what was done."""
    engine = environ.get(ENV_TRANSFORM_ENGINE) or "duckdb"
    if engine not in ("duckdb", "glue"):
        raise TransformEventError(f"{ENV_TRANSFORM_ENGINE}={engine!r}: the engines are duckdb and glue")
    lake_uri = environ.get(ENV_LAKE)
    if not lake_uri:
        raise TransformEventError(f"{ENV_LAKE} is not set: the function needs the lake's s3:// URI")
    date_from, date_to = days_for(event, now=now or datetime.now(UTC))
    price_version = (event or {}).get("price_version") if isinstance(event, Mapping) else None
    scheduled = not (isinstance(event, Mapping) and (event.get("date_from") or event.get("date_to")))

    lake = Lake.open(lake_uri)
    teams = _refresh_teams(lake, environ.get(ENV_TENANT_TABLE))
    # found before yesterday and today run, so the cap counts only the older days
    late = late_days(lake, today=date_to, environ=environ) if scheduled and engine == "duckdb" else LatePlan()
    manifests: list[Any] = []
    if engine == "duckdb":  # glue: the unit's Glue job transforms (transforms/glue_job.py); this run only refreshes
        # reference/teams and corrects the spend counters from what the Glue runs wrote (one schedule behind at most)
        manifests = transform_range(lake=lake, date_from=date_from, date_to=date_to, price_version=price_version)
        manifests += _transform_late(lake, late, price_version)
    totals = _totals(manifests)
    days = sorted({*days_between(date_from, date_to), *(s.day for s in late.run)})
    spend = _correct_spend(lake, teams=teams or [], days=days, environ=environ)
    return {"date_from": date_from.isoformat(), "date_to": date_to.isoformat(),
            "days": [m.day for m in manifests], "price_version": manifests[0].price_version if manifests else None,
            "late_days": [s.as_dict() for s in late.run], "late_days_left": [str(s.day) for s in late.left],
            "late_days_set_aside": [s.as_dict() for s in late.set_aside],
            "counts": totals, "teams": None if teams is None else len(teams), "spend_correction": spend}


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (``transforms.lambda_handler.handler``)."""
    metrics.set_default_dimensions(business_unit=os.environ.get(ENV_BUSINESS_UNIT) or "default")
    result = run(event, environ=os.environ)
    metrics.add_metric(name=METRIC_CURATED_EVENTS, unit=MetricUnit.Count, value=result["counts"].get("written", 0))
    metrics.add_metric(name=METRIC_QUARANTINED_EVENTS, unit=MetricUnit.Count,
                       value=result["counts"].get("quarantined", 0))
    spend = result.get("spend_correction") or {}
    for name, key in ((METRIC_SPEND_STORE_ERRORS, "store_errors"), (METRIC_ALERT_DELIVERY_FAILURES,
                                                                    "alerts_undelivered")):
        if spend.get(key):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=spend[key])
    logger.info("transform finished", extra=result)
    if spend.get("error"):
        # The days are written; failing the run makes the transform's failure alarm fire and Lambda retry it.
        raise SpendCorrectionError(f"days {result['date_from']}..{result['date_to']} transformed, but "
                                   f"{spend['error']}")
    return result
