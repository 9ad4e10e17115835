"""The scheduled billing import in AWS Lambda: the payer account's CUR 2.0 Data Export → snapshots → reconciliation.

EventBridge invokes it on the unit's ``billing.schedule`` (``infra/constructs/billing_import.py``). The payer
account's AWS Data Export (docs/deploy.md) delivers into the lake bucket in the Data Exports layout:

    billing/exports/<export>/data/BILLING_PERIOD=YYYY-MM/<data files>
    billing/exports/<export>/metadata/BILLING_PERIOD=YYYY-MM/<export>-Manifest.json   (written after the data files)

A run looks at the current and the previous billing period (UTC months: AWS restates the previous one for weeks after
it ends). A period is imported from the files its manifest's ``dataFiles`` lists (:func:`finance.cur.import_export`,
one new snapshot), and only when the manifest is newer than the period's newest snapshot: AWS refreshes an export
about daily, so a schedule that runs more often makes no duplicate snapshot. An imported period is then reconciled and
stored (:mod:`finance.reconcile`); so is a period whose stored reconciliation is older than its newest snapshot (a run
that failed after importing), so a retry finishes the work.

Invoke it by hand with ``{"periods": ["2026-09"]}`` to look at other periods (the same rules apply).

Each run emits ``CurSnapshotsImported`` (namespace ``modelmeter``, dimensions ``service`` and ``business_unit``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.fs as pafs
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from common.constants import (
    BILLING_EXPORTS,
    CURATED_RECONCILIATION,
    ENV_BILLING_EXPORT_NAME,
    ENV_BILLING_INCLUDE_TAX,
    ENV_BUSINESS_UNIT,
    ENV_LAKE,
    METRIC_CUR_SNAPSHOTS_IMPORTED,
    METRICS_NAMESPACE,
    SERVICE_BILLING,
)
from common.errors import UserError
from common.lake import Lake
from finance.cur import Snapshot, import_export, list_snapshots
from finance.reconcile import RECONCILIATION_FILE, reconcile, scope_from_environment, store
from pricing_catalog import Catalog, list_versions, load_catalog

SERVICE = SERVICE_BILLING
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)

_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
#: S3 keeps an object's LastModified to the second. A manifest stamped less than a second before the newest snapshot
#: may have been written after it, so it counts as newer: at worst one extra snapshot, never a missed refresh.
S3_TIME_RESOLUTION = timedelta(seconds=1)


class BillingEventError(ValueError):
    """The invocation event or the function's environment cannot be used; the message says what to send or set."""


class BillingImportError(RuntimeError):
    """A period could not be imported or reconciled (the message names each with its reason); the others were."""


@dataclass(frozen=True)
class ExportManifest:
    """One period's ``<export>-Manifest.json``: when AWS last wrote it and the data files it lists (``fs`` paths)."""

    period: str
    path: str
    written_at: datetime
    data_files: tuple[str, ...]


def periods_for(event: Mapping[str, Any] | None, *, now: datetime) -> list[str]:
    """The billing periods a run looks at: the previous and the current UTC month, or the event's ``periods``.

    Raises:
        BillingEventError: ``periods`` is not a non-empty list of ``YYYY-MM``.
    """
    given = event.get("periods") if isinstance(event, Mapping) else None
    if given is None:
        first = now.astimezone(UTC).date().replace(day=1)
        previous = (first - timedelta(days=1)).replace(day=1)
        return [f"{previous:%Y-%m}", f"{first:%Y-%m}"]
    if not isinstance(given, list) or not given:
        raise BillingEventError('periods must be a list of billing periods, like {"periods": ["2026-11"]}')
    bad = [p for p in given if not isinstance(p, str) or not _PERIOD.match(p)]
    if bad:
        raise BillingEventError(f"periods {bad!r}: write each billing period as YYYY-MM")
    return sorted(set(given))


def _folder(lake: Lake, export_name: str, kind: str, period: str) -> str:
    return lake.path(BILLING_EXPORTS, export_name, kind, f"BILLING_PERIOD={period}")


def read_manifest(*, lake: Lake, export_name: str, period: str) -> ExportManifest | None:
    """The period's manifest, or None while the export has not delivered the period.

    A ``dataFiles`` entry is an ``s3://`` URI (as AWS writes it) or a path relative to the period's data folder.

    Raises:
        UserError: the manifest is not JSON with a ``dataFiles`` list, or lists a file outside the period's data folder.
    """
    path = f"{_folder(lake, export_name, 'metadata', period)}/{export_name}-Manifest.json"
    info = lake.fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return None
    with lake.fs.open_input_stream(path) as src:
        text = src.read()
    try:
        listed = json.loads(text)["dataFiles"]
        if not isinstance(listed, list) or not all(isinstance(e, str) for e in listed):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not a Data Exports manifest (JSON with a dataFiles list of files)") from None
    data = _folder(lake, export_name, "data", period)
    files = tuple(e.removeprefix("s3://") if e.startswith("s3://") else f"{data}/{e.lstrip('/')}" for e in listed)
    outside = [e for e, f in zip(listed, files, strict=True) if not f.startswith(data + "/") or "/../" in f]
    if outside:
        raise UserError(f"{path}: dataFiles {', '.join(outside)} are not under the period's data folder {data}/")
    return ExportManifest(period=period, path=path, written_at=info.mtime, data_files=files)


def is_newer(manifest: ExportManifest, snapshot: Snapshot | None) -> bool:
    """Whether AWS wrote ``manifest`` after ``snapshot`` (the period's newest) was imported."""
    if snapshot is None:
        return True
    return manifest.written_at + S3_TIME_RESOLUTION > datetime.fromisoformat(snapshot.imported_at)


def _refresh_under_way(lake: Lake, manifest: ExportManifest) -> bool:
    """A listed file is missing or newer than the manifest: AWS is rewriting the period; its new manifest follows."""
    infos = lake.fs.get_file_info(list(manifest.data_files))
    return any(i.type == pafs.FileType.NotFound or i.mtime > manifest.written_at for i in infos)


def _reconciled_since(lake: Lake, snapshot: Snapshot) -> bool:
    info = lake.fs.get_file_info(lake.path(CURATED_RECONCILIATION, f"billing_period={snapshot.billing_period}",
                                           RECONCILIATION_FILE))
    return info.type != pafs.FileType.NotFound and \
        info.mtime + S3_TIME_RESOLUTION > datetime.fromisoformat(snapshot.imported_at)


def _catalog(lake: Lake) -> Catalog:
    # load_catalog(lake=…) publishes the built-in catalog into a lake that has none; this function may only read
    # pricing/ (the transform publishes), and without a published version nothing was priced yet anyway.
    return load_catalog(lake=lake) if list_versions(lake=lake) else load_catalog()


def _import(lake: Lake, manifest: ExportManifest, started: datetime) -> Snapshot | None:
    urls = [f if lake.is_local else f"s3://{f}" for f in manifest.data_files]
    snapshots = [s for s in import_export(lake=lake, paths=urls, now=started) if s.billing_period == manifest.period]
    return snapshots[0] if snapshots else None


def _period(lake: Lake, *, export_name: str, period: str, started: datetime) -> tuple[dict[str, Any], Snapshot | None]:
    """Import ``period`` when its manifest is newer; ``(what happened, the snapshot to reconcile or None)``."""
    manifest = read_manifest(lake=lake, export_name=export_name, period=period)
    snapshots = list_snapshots(lake=lake, period=period)
    newest = snapshots[-1] if snapshots else None
    if manifest is None:
        return {"status": "no_export"}, None
    if not is_newer(manifest, newest):
        assert newest is not None  # is_newer says True without a snapshot
        pending = not _reconciled_since(lake, newest)
        return {"status": "unchanged", "snapshot": newest.snapshot_id}, newest if pending else None
    if not manifest.data_files:
        return {"status": "empty"}, None
    if _refresh_under_way(lake, manifest):
        return {"status": "refresh_under_way"}, None
    snapshot = _import(lake, manifest, started)
    if snapshot is None:
        raise UserError(f"{manifest.path}: its data files hold no line of billing period {period}")
    return {"status": "imported", "snapshot": snapshot.snapshot_id, "rows": snapshot.rows,
            "final": snapshot.final}, snapshot


def run(event: Mapping[str, Any] | None, *, environ: Mapping[str, str], now: datetime | None = None
        ) -> dict[str, Any]:
    """Import and reconcile the event's periods on the lake named by ``MODELMETER_LAKE``; return what was done."""
    lake_uri, export_name = environ.get(ENV_LAKE), environ.get(ENV_BILLING_EXPORT_NAME)
    if not lake_uri or not export_name:
        missing = [n for n, v in ((ENV_LAKE, lake_uri), (ENV_BILLING_EXPORT_NAME, export_name)) if not v]
        raise BillingEventError(f"{' and '.join(missing)} not set: the function needs the lake's URI and the "
                                "Data Export's name")
    started = now or datetime.now(UTC)
    periods = periods_for(event, now=started)
    scope = scope_from_environment(environ, include_tax=environ.get(ENV_BILLING_INCLUDE_TAX, "").lower() == "true")
    lake = Lake.open(lake_uri)
    done: dict[str, dict[str, Any]] = {}
    catalog: Catalog | None = None
    imported = 0
    for period in periods:
        try:  # one period's bad export must not keep the other from being imported
            done[period], pending = _period(lake, export_name=export_name, period=period, started=started)
            imported += done[period]["status"] == "imported"
            if pending is not None:
                catalog = catalog or _catalog(lake)
                rec = reconcile(lake=lake, period=period, catalog=catalog, scope=scope,
                                snapshot_id=pending.snapshot_id)
                store(lake=lake, reconciliation=rec)
                done[period] |= {"reconciled": pending.snapshot_id, "billed_total": format(rec.billed_total, "f"),
                                 "metered_total": format(rec.metered_total, "f"), "currency": rec.currency}
        except UserError as exc:
            done[period] = {**done.get(period, {}), "status": "failed", "error": str(exc)}
    return {"export": export_name, "periods": done, "imported": imported}


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (``finance.lambda_handler.handler``)."""
    # a per-invocation dimension (log_metrics clears it after each flush): a warm function never re-adds a default one
    metrics.add_dimension(name="business_unit", value=os.environ.get(ENV_BUSINESS_UNIT) or "default")
    result = run(event, environ=os.environ)
    metrics.add_metric(name=METRIC_CUR_SNAPSHOTS_IMPORTED, unit=MetricUnit.Count, value=result["imported"])
    failed = {p: r["error"] for p, r in result["periods"].items() if r["status"] == "failed"}
    if failed:  # the run fails, so Lambda retries it and the failure alarm fires; the other periods are done
        logger.error("billing import failed", extra=result)
        raise BillingImportError("; ".join(f"billing period {p}: {e}" for p, e in failed.items()))
    logger.info("billing import finished", extra=result)
    return result
