"""Fleet-wide spend counters: what every gateway process sees of a team's month-to-date spend and daily tokens.

A team's budget holds across every process (uvicorn workers, Lambda containers) only if they count in one shared
store. :class:`SpendStore` is that store's interface (DESIGN.md "Spend controls"); :class:`SqliteSpendStore` is the
local one (a file beside the tenant registry, WAL mode, safe across processes); the AWS one keeps DynamoDB atomic
counters in items a deploy never rewrites.

Keys: ``period`` is the budget period, the fiscal month of the reporting calendar, named by its first day
(``2026-11-01``; :class:`common.calendar.Calendar`); ``day`` is a day of the same calendar (``2026-11-25``).
Money is whole pico-dollars (``10**12`` per USD, the transform's arithmetic), so counters add exactly.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

#: Pico-dollars per USD: the transform's integer cost unit (``marts/usage_cost_pico.sql``).
PICO_PER_USD = 10**12
#: Largest counter SQLite keeps exactly (a signed 64-bit integer): $9.2 million per team and fiscal month.
MAX_PICO = 2**63 - 1


class SpendStoreError(Exception):
    """The store cannot be reached or did not answer in time (the gateway then fails closed for block-mode teams)."""


@dataclass(frozen=True)
class SpendTotals:
    """A team's counters for one budget period and one day, as the store holds them.

    Attributes:
        spend_pico: month-to-date spend of the period, whole pico-dollars.
        period_requests: calls counted in the period (refused ones too).
        day_tokens: tokens of the day (every billable token count of the event added up).
        day_requests: calls counted on the day.
    """

    spend_pico: int = 0
    period_requests: int = 0
    day_tokens: int = 0
    day_requests: int = 0


class SpendStore(Protocol):
    """Counters shared by every gateway process. Every method is atomic fleet-wide; any may raise
    :class:`SpendStoreError` when the store cannot be reached."""

    @property
    def location(self) -> str:
        """Where the counters are, for messages (a file path, ``dynamodb://TABLE``)."""
        ...

    def read(self, team_id: str, *, period: str, day: str) -> SpendTotals:
        """The team's counters for ``period`` and ``day`` (zeros when nothing was counted yet)."""
        ...

    def add(self, team_id: str, *, period: str, day: str, spend_pico: int, tokens: int,
            requests: int = 1) -> SpendTotals:
        """Add one finished call (or a batch of them) atomically; the new totals, this addition included."""
        ...

    def set_spend(self, team_id: str, *, period: str, spend_pico: int) -> None:
        """Replace the period's spend (the correction from the curated tables after a transform run)."""
        ...

    def first_alert(self, team_id: str, *, period: str, threshold: int) -> bool:
        """Record that ``threshold`` (percent of the budget) was crossed; ``True`` exactly once fleet-wide per
        team, period and threshold (the caller that gets ``True`` delivers the alert)."""
        ...

    def alerts(self, team_id: str, *, period: str) -> tuple[int, ...]:
        """The thresholds already alerted for the team in ``period``, ascending."""
        ...

    def teams(self, *, period: str) -> tuple[str, ...]:
        """The teams with counters in ``period`` (for ``modelmeter budget show``), sorted."""
        ...

    def close(self) -> None: ...


# --- the local store: SQLite in WAL mode -------------------------------------------------------------------------

_SCHEMA = """
create table if not exists period_spend (
    team_id text not null, period text not null, spend_pico integer not null default 0,
    requests integer not null default 0, primary key (team_id, period)) without rowid;
create table if not exists daily_usage (
    team_id text not null, day text not null, tokens integer not null default 0,
    requests integer not null default 0, primary key (team_id, day)) without rowid;
create table if not exists alerts (
    team_id text not null, period text not null, threshold integer not null, raised_at text not null,
    primary key (team_id, period, threshold)) without rowid;
"""
_READ = """
select coalesce((select spend_pico from period_spend where team_id = ?1 and period = ?2), 0),
       coalesce((select requests from period_spend where team_id = ?1 and period = ?2), 0),
       coalesce((select tokens from daily_usage where team_id = ?1 and day = ?3), 0),
       coalesce((select requests from daily_usage where team_id = ?1 and day = ?3), 0)
"""
_ADD_PERIOD = """
insert into period_spend (team_id, period, spend_pico, requests) values (?, ?, ?, ?)
on conflict (team_id, period) do update set spend_pico = spend_pico + excluded.spend_pico,
                                           requests = requests + excluded.requests
returning spend_pico, requests
"""
_ADD_DAY = """
insert into daily_usage (team_id, day, tokens, requests) values (?, ?, ?, ?)
on conflict (team_id, day) do update set tokens = tokens + excluded.tokens, requests = requests + excluded.requests
returning tokens, requests
"""


class SqliteSpendStore:
    """:class:`SpendStore` in one SQLite file shared by every process on the machine.

    WAL mode (readers never wait for the writer), each write one ``BEGIN IMMEDIATE`` transaction (the write lock is
    taken at once, so two processes never both read-then-write), a busy timeout for the lock. ``synchronous=NORMAL``:
    a commit does not fsync (the WAL is synced at checkpoints), so a power cut can lose the last moments of counts,
    never corrupt the file; the next transform's correction restores the spend from the curated tables.

    One connection per thread (sqlite3 connections are not shared across threads).

    Args:
        path: the database file (created with its folder).
        busy_timeout: seconds to wait for another process's write lock before :class:`SpendStoreError`.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 2.0, checkpoint_seconds: float = 1.0):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.checkpoint_seconds = checkpoint_seconds
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._mutex = threading.Lock()  # the file is opened on first use: a store that cannot be opened fails calls
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None

    @property
    def location(self) -> str:
        return str(self.path)

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            self._local.con = con
            with self._mutex:
                self._all.append(con)
                if self._checkpointer is None:
                    self._stop = threading.Event()
                    self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(self._stop,),
                                                          daemon=True, name="modelmeter-spend-checkpoint")
                    self._checkpointer.start()
        return con

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Setting up a connection (WAL mode, the schema) under an exclusive file lock: SQLite answers "database is
        # locked" at once, without its busy handler, when connections of several processes do it together.
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # isolation_level=None: autocommit, transactions are the explicit BEGIN IMMEDIATE … COMMIT below.
            con = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                  check_same_thread=False)
            try:
                con.execute(f"pragma busy_timeout = {int(self.busy_timeout * 1000)}")
                con.execute("pragma journal_mode = wal")
                con.execute("pragma synchronous = normal")
                # No checkpoint inside a call's commit (its fsync was the tail of the per-call cost): a background
                # thread checkpoints every checkpoint_seconds instead (bench/gateway.py: p99.9 from ~5-12 ms to
                # under 1 ms).
                con.execute("pragma wal_autocheckpoint = 0")
                con.executescript(_SCHEMA)  # idempotent; once per thread's connection
            except BaseException:
                con.close()
                raise
        return con

    def _checkpoint_loop(self, stop: threading.Event) -> None:
        con: sqlite3.Connection | None = None
        while not stop.wait(self.checkpoint_seconds):
            try:
                con = con or sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                             check_same_thread=False)
                con.execute("pragma wal_checkpoint(passive)")  # never waits for the callers' transactions
            except sqlite3.Error:
                pass  # the callers see (and count) a failing store; the next round retries
        if con is not None:
            con.close()

    def _errors(self, what: str) -> _StoreErrors:
        return _StoreErrors(self, what)

    def read(self, team_id: str, *, period: str, day: str) -> SpendTotals:
        with self._errors("read"):
            row = self._con().execute(_READ, (team_id, period, day)).fetchone()
        return SpendTotals(*row)

    def add(self, team_id: str, *, period: str, day: str, spend_pico: int, tokens: int,
            requests: int = 1) -> SpendTotals:
        with self._errors("update"):
            con = self._con()
            con.execute("begin immediate")
            try:
                spend, period_requests = con.execute(_ADD_PERIOD, (team_id, period, spend_pico, requests)).fetchone()
                day_tokens, day_requests = con.execute(_ADD_DAY, (team_id, day, tokens, requests)).fetchone()
                if not isinstance(spend, int) or spend > MAX_PICO:  # SQLite turns an overflow into a float
                    raise SpendStoreError(f"team {team_id!r}: the period's spend overflows the local store")
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
        return SpendTotals(spend, period_requests, day_tokens, day_requests)

    def set_spend(self, team_id: str, *, period: str, spend_pico: int) -> None:
        with self._errors("update"):
            self._con().execute(
                "insert into period_spend (team_id, period, spend_pico) values (?, ?, ?) on conflict (team_id, "
                "period) do update set spend_pico = excluded.spend_pico", (team_id, period, spend_pico))

    def first_alert(self, team_id: str, *, period: str, threshold: int) -> bool:
        with self._errors("update"):
            cursor = self._con().execute(
                "insert into alerts (team_id, period, threshold, raised_at) values (?, ?, ?, ?) "
                "on conflict do nothing", (team_id, period, threshold,
                                           datetime.now(UTC).isoformat(timespec="milliseconds")))
            return cursor.rowcount == 1

    def alerts(self, team_id: str, *, period: str) -> tuple[int, ...]:
        with self._errors("read"):
            rows = self._con().execute("select threshold from alerts where team_id = ? and period = ? "
                                       "order by threshold", (team_id, period)).fetchall()
        return tuple(r[0] for r in rows)

    def teams(self, *, period: str) -> tuple[str, ...]:
        with self._errors("read"):
            rows = self._con().execute("select team_id from period_spend where period = ? order by team_id",
                                       (period,)).fetchall()
        return tuple(r[0] for r in rows)

    def close(self) -> None:
        self._stop.set()
        with self._mutex:
            if self._checkpointer is not None:
                self._checkpointer.join(timeout=5)
                self._checkpointer = None
            for con in self._all:
                con.close()
            self._all.clear()
        self._local = threading.local()


class _StoreErrors:
    """``sqlite3`` and OS errors → :class:`SpendStoreError` naming the file (a locked, missing or damaged store)."""

    def __init__(self, store: SqliteSpendStore, what: str):
        self.store, self.what = store, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 _tb: object) -> Literal[False]:
        if isinstance(exc, (sqlite3.Error, OSError)):
            raise SpendStoreError(f"spend store {self.store.path}: cannot {self.what} ({exc})") from exc
        return False


# --- one process's store: tests, the OpenAPI document, an app built without a shared store ---------------------

class MemorySpendStore:
    """:class:`SpendStore` in this process's memory: counts are per process (what ``create_app`` uses when no
    shared store is given). Same semantics as the shared stores, so tests of the guard run against it too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._period: dict[tuple[str, str], list[int]] = {}
        self._day: dict[tuple[str, str], list[int]] = {}
        self._alerts: dict[tuple[str, str], set[int]] = {}

    @property
    def location(self) -> str:
        return "memory (this process only)"

    def read(self, team_id: str, *, period: str, day: str) -> SpendTotals:
        with self._lock:
            p = self._period.get((team_id, period), [0, 0])
            d = self._day.get((team_id, day), [0, 0])
            return SpendTotals(p[0], p[1], d[0], d[1])

    def add(self, team_id: str, *, period: str, day: str, spend_pico: int, tokens: int,
            requests: int = 1) -> SpendTotals:
        with self._lock:
            p = self._period.setdefault((team_id, period), [0, 0])
            d = self._day.setdefault((team_id, day), [0, 0])
            p[0] += spend_pico
            p[1] += requests
            d[0] += tokens
            d[1] += requests
            return SpendTotals(p[0], p[1], d[0], d[1])

    def set_spend(self, team_id: str, *, period: str, spend_pico: int) -> None:
        with self._lock:
            self._period.setdefault((team_id, period), [0, 0])[0] = spend_pico

    def first_alert(self, team_id: str, *, period: str, threshold: int) -> bool:
        with self._lock:
            raised = self._alerts.setdefault((team_id, period), set())
            if threshold in raised:
                return False
            raised.add(threshold)
            return True

    def alerts(self, team_id: str, *, period: str) -> tuple[int, ...]:
        with self._lock:
            return tuple(sorted(self._alerts.get((team_id, period), ())))

    def teams(self, *, period: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(t for t, p in self._period if p == period))

    def close(self) -> None: ...


def store_path(registry_path: str | os.PathLike[str]) -> Path:
    """The local spend store of a tenant registry file: beside it, ``tenants.json`` → ``tenants.spend.sqlite``."""
    path = Path(registry_path)
    return path.with_name(f"{path.stem}.spend.sqlite")
