"""``modelmeter budget show [TEAM]``, and the correction of the local spend counters after ``modelmeter transform``.

Both read the gateway's fleet-wide spend store (``ingest/spend.py``): locally the SQLite file beside the tenant
registry (``tenants.spend.sqlite`` beside ``tenants.json``); a deployed unit's DynamoDB counters table with
``--spend dynamodb://TABLE`` (or ``$MODELMETER_SPEND_TABLE``; the stack's ``SpendTableName`` output). The correction
itself is ``transforms.spend_correction`` (the transform Lambda runs the same one against DynamoDB).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import NoRegionError

from common.calendar import Calendar
from common.constants import ENV_SPEND_TABLE
from common.contracts import Team
from common.errors import UserError
from common.lake import Lake
from ingest.alerts import LocalAlerts
from ingest.budget import usage_report
from ingest.registry import DYNAMODB_SCHEME, AdminRegistry, dynamodb_uri_table, is_dynamodb, open_registry
from ingest.spend import SpendStore, SpendStoreError, SqliteSpendStore, store_path
from ingest.spend_dynamo import DynamoSpendStore
from ingest.tenants import registry_path
from sql.config import ReportingConfig
from transforms.spend_correction import correct_after_run

_COLUMNS = ("team_id", "period", "budget_mode", "spend_usd", "budget_usd", "remaining_usd", "alert_at",
            "thresholds_crossed", "alerts_raised", "requests", "daily_tokens_used", "daily_tokens_limit")


def _calendar() -> Calendar:
    try:
        return ReportingConfig.from_env().calendar
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _dynamodb_spend_table(target: str) -> str | None:
    """The table of a ``dynamodb://TABLE`` spend store, else None (a SQLite file)."""
    return dynamodb_uri_table(target, what="spend store",
                              table="the counters table's name (the stack's SpendTableName output)")


def _open_store(registry: AdminRegistry, spend: str | None) -> SpendStore:
    """``--spend`` (``dynamodb://TABLE`` or a SQLite file), else ``$MODELMETER_SPEND_TABLE`` (a table name, as the
    Lambdas have it, or ``dynamodb://TABLE``), else the SQLite file beside a local tenant file."""
    given = (spend or "").strip()
    if not given and os.environ.get(ENV_SPEND_TABLE, "").strip():
        given = os.environ[ENV_SPEND_TABLE].strip()
        if not given.lower().startswith("dynamodb:"):
            given = DYNAMODB_SCHEME + given
    if given:
        table = _dynamodb_spend_table(given)
        if table is None:
            return SqliteSpendStore(given)
        try:
            client = boto3.client("dynamodb")
        except NoRegionError:
            raise UserError(f"spend store {given}: no AWS region is configured (set AWS_DEFAULT_REGION, or a "
                            f"profile's region)") from None
        return DynamoSpendStore(table_name=table, client=client)
    if is_dynamodb(registry):
        raise UserError(f"{registry.location} is a deployed unit's tenant table: name its spend counters too, with "
                        f"--spend dynamodb://TABLE (the stack's SpendTableName output) or ${ENV_SPEND_TABLE}")
    return SqliteSpendStore(store_path(Path(registry.location)))


def run_show(args: Any) -> int:
    """``modelmeter budget show [TEAM]``: each team's current fiscal month, as ``GET /v1/usage`` says it."""
    registry = open_registry(tenants=getattr(args, "tenants", None), lake=getattr(args, "lake", None))
    calendar = _calendar()
    store = _open_store(registry, getattr(args, "spend", None))
    now = datetime.now(UTC)
    period, day = calendar.period(now), calendar.day(now)
    try:
        teams = {t.team_id: t for t in registry.list_teams()}
        if args.team:
            if args.team not in teams:
                raise UserError(f"no team {args.team!r} in {registry.location}")
            wanted = [teams[args.team]]
        else:
            counted = set(store.teams(period=period.key))
            wanted = [teams.get(t) or Team(team_id=t) for t in sorted(set(teams) | counted)]
        reports = [usage_report(t, totals=store.read(t.team_id, period=period.key, day=day.key),
                                alerted=store.alerts(t.team_id, period=period.key), period=period, day=day,
                                calendar=calendar, store=store.location) for t in wanted]
    except SpendStoreError as exc:
        raise UserError(str(exc)) from None
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(reports[0] if args.team else reports, indent=2))
        return 0
    resets = f"{period.resets_at:%Y-%m-%d %H:%M}"
    print(f"fiscal month {period.start} to {period.end} in {calendar.timezone} (resets {resets} UTC); spend from "
          f"the gateway's counters in {store.location}", file=sys.stderr)
    print("\t".join(_COLUMNS))
    for r in reports:
        print("\t".join(_cell(r[c]) for c in _COLUMNS))
    return 0


def _cell(value: Any) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


# --- the correction after a local transform run ------------------------------------------------------------------

def correct_after_transform(*, lake: Lake, days: Iterable[date]) -> list[str]:
    """Set every team's month-to-date spend in the local spend store to the curated figure, for each fiscal month
    the transformed ``days`` (UTC) touch whose days with events are all transformed up to the last one run; the
    lines to print.

    Nothing to do (``[]``) when the lake is on S3 (the deployed unit's store is DynamoDB, corrected by the transform
    Lambda) or no gateway has counted beside this lake's tenant registry yet.
    """
    days = sorted(set(days))
    if not days or not lake.is_local:
        return []
    try:
        registry_file = registry_path(tenants=None, lake=lake.uri)
    except UserError:
        return []
    store_file = store_path(registry_file)
    if not store_file.exists():
        return []
    registry = open_registry(tenants=str(registry_file), lake=lake.uri)
    try:
        config = ReportingConfig.from_env()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    store = SqliteSpendStore(store_file)
    alerts = LocalAlerts.from_env(lake=lake)  # the webhook too, as the gateway's alerts
    try:
        corrections = correct_after_run(lake=lake, store=store, teams=registry.list_teams(), days=days,
                                        config=config, alerts=alerts)
    except SpendStoreError as exc:
        return [f"warning: budget counters not corrected: {exc}"]
    finally:
        store.close()
        alerts.close(timeout=30)  # deliver the alerts the correction raised before the command returns
    return [c.describe() for c in corrections]
