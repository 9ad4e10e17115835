"""Close, reopen and restate billing periods: the chargeback of record stops moving once finance has booked it.

- **Close** (:func:`close`) freezes a period's latest chargeback version as its record. A period's state is its
  latest event in ``curated/period_events/billing_period=P/`` (append-only: ``close`` or ``reopen``, who, when,
  why); no event means open. A closed period's record never changes, whatever a transform re-run, a new CUR
  snapshot or an organisation change does to the inputs.
- **Reopen** (:func:`reopen`) needs a reason, which is recorded. A period whose restatements were already posted
  into a later period cannot be reopened: those lines are booked, and reopening would count the correction twice.
- **Restate** (:func:`restate`) compares the closed record (plus any earlier restatements of it) with a chargeback
  computed now (the caller computes it from today's inputs: a price version, the newest CUR snapshot, the dated
  organisation). The restated chargeback is stored as a version of its own (``purpose`` ``restatement``); the
  deltas per cost centre × team are posted as adjustment lines into the next open period
  (``curated/adjustments/billing_period=NEXT/<id>.parquet``, labelled with the period they correct). Deltas are
  exact: each is restated − booked, in cents, so they sum to restated − booked exactly. A period's own rows still
  sum to its own invoice; adjustment lines are extra rows.

Billing periods are the CUR's UTC calendar months (``YYYY-MM``): the invoice's calendar, not the reporting one.
"""

from __future__ import annotations

import getpass
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from common.constants import CURATED_ADJUSTMENTS, CURATED_CHARGEBACK, CURATED_PERIOD_EVENTS
from common.contracts import adjustments_schema, chargeback_schema, period_events_schema
from common.errors import UserError
from common.lake import Lake
from common.locks import lake_lock
from finance.chargeback import CHARGEBACK_FILE, Chargeback, VersionInfo, next_version, store, versions

LOCK_FILE = ".close.lock"
_ZERO = Decimal(0)
_PARTS = ("metered_list_cost", "price_adjustment", "allocated_shared_cost", "chargeback_cost")


@dataclass(frozen=True)
class PeriodStatus:
    """A billing period's state: ``closed`` with the version of record, or open (``version`` None: the latest)."""

    billing_period: str
    closed: bool
    version: int | None = None
    event: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return "closed" if self.closed else "open"


@dataclass
class Record:
    """What a period's chargeback of record is: its own rows (one version) and the adjustment lines posted into it."""

    status: PeriodStatus
    info: VersionInfo
    rows: list[dict[str, Any]]
    adjustments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Restatement:
    """A restatement of a closed period: one row per cost centre × team, and where its deltas were posted."""

    billing_period: str
    restatement_id: str
    closed_version: int
    restated: Chargeback
    rows: list[dict[str, Any]]
    posted_to: str | None  # None: a dry run, or nothing moved


# --- periods ---------------------------------------------------------------------------------------------------

def next_period(period: str) -> str:
    year, month = (int(p) for p in period.split("-"))
    return f"{year + month // 12}-{month % 12 + 1:02d}"


@contextmanager
def period_lock(lake: Lake, period: str, *, what: str) -> Iterator[None]:
    """Serialise the commands that change one period (chargeback versions, close, reopen, restate)."""
    with lake_lock(lake, CURATED_PERIOD_EVENTS, f"billing_period={period}", LOCK_FILE,
                   owner=f"{getpass.getuser()}:{what}", what=f"billing period {period} ({what})"):
        yield


def events(*, lake: Lake, period: str) -> list[dict[str, Any]]:
    """Every close and reopening of ``period``, oldest first."""
    rows: list[dict[str, Any]] = []
    for path in lake.list_files(CURATED_PERIOD_EVENTS, f"billing_period={period}"):
        with lake.fs.open_input_file(path) as src:
            rows += pq.read_table(src).cast(period_events_schema()).to_pylist()
    return sorted(rows, key=lambda r: r["seq"])


def status(*, lake: Lake, period: str) -> PeriodStatus:
    history = events(lake=lake, period=period)
    if history and history[-1]["action"] == "close":
        return PeriodStatus(period, True, history[-1]["version"], history[-1])
    return PeriodStatus(period, False, None, history[-1] if history else None)


def _write_event(lake: Lake, period: str, *, action: str, now: datetime, version: int | None = None,
                 reason: str | None = None, info: VersionInfo | None = None, adjustments: list[str] | None = None
                 ) -> dict[str, Any]:
    seq = len(events(lake=lake, period=period)) + 1
    row = {"billing_period": period, "seq": seq, "action": action, "version": version, "reason": reason, "at": now,
           "by": getpass.getuser(), "cur_snapshot": info.cur_snapshot if info else None,
           "cur_final": info.cur_final if info else None,
           "adjustments": ",".join(adjustments) if adjustments else None}
    lake.write_parquet(pa.Table.from_pylist([row], schema=period_events_schema()), CURATED_PERIOD_EVENTS,
                       f"billing_period={period}", f"event-{seq:06d}.parquet")
    return row


def next_open_period(*, lake: Lake, period: str) -> str:
    """The first billing period after ``period`` that is not closed (adjustment lines are posted there)."""
    candidate = next_period(period)
    while status(lake=lake, period=candidate).closed:
        candidate = next_period(candidate)
    return candidate


# --- the record ------------------------------------------------------------------------------------------------

def _chargebacks(lake: Lake, period: str) -> list[VersionInfo]:
    return [v for v in versions(lake=lake, period=period) if v.purpose == "chargeback"]


def read_rows(*, lake: Lake, period: str, version: int) -> list[dict[str, Any]]:
    path = lake.path(CURATED_CHARGEBACK, f"billing_period={period}", f"version={version}", CHARGEBACK_FILE)
    with lake.fs.open_input_file(path) as src:
        table = pq.read_table(src)
    names = [n for n in chargeback_schema().names if n in table.column_names]
    return table.select(names).to_pylist()


def posted_adjustments(*, lake: Lake, period: str) -> list[dict[str, Any]]:
    """The adjustment lines posted into ``period`` (restatements of earlier closed periods)."""
    rows: list[dict[str, Any]] = []
    for path in lake.list_files(CURATED_ADJUSTMENTS, f"billing_period={period}"):
        with lake.fs.open_input_file(path) as src:
            rows += pq.read_table(src).cast(adjustments_schema()).to_pylist()
    return sorted(rows, key=lambda r: (r["restatement"], r["cost_center"] or "", r["team_id"]))


def adjustments_correcting(*, lake: Lake, period: str) -> list[dict[str, Any]]:
    """Every adjustment line, wherever posted, that corrects ``period``."""
    rows: list[dict[str, Any]] = []
    for path in lake.list_files(CURATED_ADJUSTMENTS):
        with lake.fs.open_input_file(path) as src:
            table = pq.read_table(src).cast(adjustments_schema())
        rows += [r for r in table.to_pylist() if r["corrects_period"] == period]
    return rows


def record(*, lake: Lake, period: str) -> Record:
    """The chargeback of record of ``period``: the closed version when closed, else the latest chargeback.

    Raises:
        UserError: no chargeback stored for the period.
    """
    state = status(lake=lake, period=period)
    stored = {v.version: v for v in versions(lake=lake, period=period)}
    if state.closed:
        assert state.version is not None
        info = stored[state.version]
    else:
        runs = _chargebacks(lake, period)
        if not runs:
            raise UserError(f"no chargeback stored for {period} in {lake.uri}: run `modelmeter chargeback --period "
                            f"{period}` first")
        info = runs[-1]
    return Record(status=state, info=info, rows=read_rows(lake=lake, period=period, version=info.version),
                  adjustments=posted_adjustments(lake=lake, period=period))


# --- close and reopen -------------------------------------------------------------------------------------------

def close(*, lake: Lake, period: str, reason: str | None = None, now: datetime | None = None) -> Record:
    """Freeze ``period``'s latest chargeback as its record.

    Raises:
        UserError: no chargeback yet, or the period is already closed.
    """
    now = now or datetime.now(UTC)
    with period_lock(lake, period, what="close"):
        state = status(lake=lake, period=period)
        if state.closed:
            assert state.event is not None
            raise UserError(f"billing period {period} is already closed (version {state.version}, "
                            f"{state.event['at']:%Y-%m-%d %H:%M} UTC by {state.event['by']}); reopen it with "
                            f"`modelmeter close --period {period} --reopen --reason TEXT`")
        runs = _chargebacks(lake, period)
        if not runs:
            raise UserError(f"no chargeback stored for {period} in {lake.uri}: run `modelmeter chargeback --period "
                            f"{period}` first, then close it")
        posted = sorted({a["restatement"] for a in posted_adjustments(lake=lake, period=period)})
        _write_event(lake, period, action="close", now=now, version=runs[-1].version, reason=reason, info=runs[-1],
                     adjustments=posted)
    return record(lake=lake, period=period)


def reopen(*, lake: Lake, period: str, reason: str | None, now: datetime | None = None) -> PeriodStatus:
    """Reopen a closed period (recorded with its reason).

    Raises:
        UserError: no reason, the period is open, or restatements of it are already posted into a later period.
    """
    if not (reason or "").strip():
        raise UserError("--reopen needs --reason TEXT: reopening a closed period is recorded with why")
    now = now or datetime.now(UTC)
    with period_lock(lake, period, what="reopen"):
        state = status(lake=lake, period=period)
        if not state.closed:
            raise UserError(f"billing period {period} is not closed: nothing to reopen")
        booked = sorted({(a["restatement"], a["billing_period"]) for a in adjustments_correcting(lake=lake,
                                                                                                period=period)})
        if booked:
            listed = ", ".join(f"{r} (in {p})" for r, p in booked)
            raise UserError(f"billing period {period} cannot be reopened: its restatements {listed} are posted as "
                            f"adjustment lines, and reopening would count them twice; restate it again instead")
        _write_event(lake, period, action="reopen", now=now, reason=reason.strip() if reason else None)
    return status(lake=lake, period=period)


# --- restate ---------------------------------------------------------------------------------------------------

def _by_line(rows: list[dict[str, Any]]) -> dict[tuple[str | None, str], dict[str, Decimal]]:
    out: dict[tuple[str | None, str], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for r in rows:
        for part in _PARTS:
            out[(r["cost_center"], r["team_id"])][part] += Decimal(r[part])
    return out


def restate(*, lake: Lake, period: str, restated: Chargeback, post: bool = True, now: datetime | None = None
            ) -> Restatement:
    """Store ``restated`` (a chargeback of ``period`` computed now) as a restatement version, and post its
    deltas against what is booked for the period (the closed record and earlier restatements) into the next open
    period. ``post=False`` only computes (nothing is written).

    Raises:
        UserError: the period is not closed, or ``restated`` is another period's.
    """
    now = now or datetime.now(UTC)
    if restated.info.billing_period != period:
        raise UserError(f"restatement of {period} given a chargeback of {restated.info.billing_period}")
    with period_lock(lake, period, what="restate"):
        state = status(lake=lake, period=period)
        if not state.closed:
            raise UserError(f"billing period {period} is open: its chargeback can simply be re-run "
                            f"(`modelmeter chargeback --period {period}`); restate is for closed periods")
        assert state.version is not None
        closed = _by_line(read_rows(lake=lake, period=period, version=state.version))
        earlier = adjustments_correcting(lake=lake, period=period)
        before = _by_line(earlier)
        now_rows = _by_line(restated.rows)
        currency = restated.info.currency
        rows = []
        for key in sorted(set(closed) | set(before) | set(now_rows), key=lambda k: (k[1] == "unallocated",
                                                                                   k[0] or "", k[1])):
            c, b, n = closed.get(key, {}), before.get(key, {}), now_rows.get(key, {})
            row: dict[str, Any] = {"cost_center": key[0], "team_id": key[1],
                                   "closed_cost": c.get("chargeback_cost", _ZERO),
                                   "adjusted_before": b.get("chargeback_cost", _ZERO),
                                   "restated_cost": n.get("chargeback_cost", _ZERO), "currency": currency}
            for part in _PARTS:
                row[f"delta_{part}"] = n.get(part, _ZERO) - c.get(part, _ZERO) - b.get(part, _ZERO)
            row["delta"] = row["delta_chargeback_cost"]
            rows.append(row)
        number = len({a["restatement"] for a in earlier}) + 1
        restatement_id = f"{period}-r{number}"
        moved = any(r[f"delta_{p}"] for r in rows for p in _PARTS)
        target = next_open_period(lake=lake, period=period) if moved else None
        if post and target is not None and status(lake=lake, period=target).closed:
            raise UserError(f"billing period {target} was closed while {period} was restated: run restate again")
        if post:
            restated.info.version = next_version(lake=lake, period=period)
            for r in restated.rows:
                r["version"] = restated.info.version
            restated.info.purpose, restated.info.restates_version = "restatement", state.version
            store(lake=lake, chargeback=restated)
            if target is not None:
                _post(lake, target=target, period=period, restatement_id=restatement_id, rows=rows,
                      closed_version=state.version, restated_version=restated.info.version, now=now)
        return Restatement(billing_period=period, restatement_id=restatement_id, closed_version=state.version,
                           restated=restated, rows=rows, posted_to=target if post else None)


def _post(lake: Lake, *, target: str, period: str, restatement_id: str, rows: list[dict[str, Any]],
          closed_version: int, restated_version: int, now: datetime) -> str:
    lines = [{"billing_period": target, "corrects_period": period, "restatement": restatement_id,
              "closed_version": closed_version, "restated_version": restated_version,
              "cost_center": r["cost_center"], "team_id": r["team_id"],
              **{part: r[f"delta_{part}"] for part in _PARTS},
              "closed_cost": r["closed_cost"] + r["adjusted_before"], "restated_cost": r["restated_cost"],
              "currency": r["currency"], "posted_at": now}
             for r in rows if any(r[f"delta_{p}"] for p in _PARTS)]
    with period_lock(lake, target, what=f"post {restatement_id}"):
        if status(lake=lake, period=target).closed:  # closed between the lookup and now
            raise UserError(f"billing period {target} was closed while {period} was restated: run restate again")
        return lake.write_parquet(pa.Table.from_pylist(lines, schema=adjustments_schema()), CURATED_ADJUSTMENTS,
                                  f"billing_period={target}", f"{restatement_id}.parquet")

