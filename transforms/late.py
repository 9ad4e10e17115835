"""Late data: which days have raw events their curated tables do not hold yet (docs/transform.md, "Late data").

Firehose retries for up to 24 hours, partners deliver batches days later, a restored spool lands last week's
events: a raw file can arrive in ``raw/usage_events/dt=D/`` long after day D was transformed. Every transform run
writes a manifest (``runs/transform/dt=D/<run id>.json``) that records the day's raw listing taken *before* its
files were read (``raw_listing``: each file's lake-relative path, size and modification time). So, precisely:

- a day is **untransformed** when it has raw files and no manifest;
- a day is **changed** when the raw files listed now differ from its last manifest's listing: a file it did not
  list (``new``), or a file of the same path with another size or modification time (``changed``);
- a file its last manifest listed that is gone now is **removed**: it alone never makes a day stale, because a
  re-run would drop events the curated tables hold (raw retention deletes old files); a stale day with removed
  files is flagged (:attr:`StaleDay.drops_events`) and the automatic modes set it aside for a person.

The day's *last* manifest is the one written last (the listing's modification times; among equal times, the
latest ``finished_at``). A file landing while a run reads the day is not in that run's listing, so the next check
finds it: an event is never taken as transformed when it was not. Manifests written before ``raw_listing`` existed
list ``input_files`` and ``unreadable_files`` by URL: their paths are compared, and a file modified after the
run started counts as changed.

Cheap by design: one listing per day partition (sizes and times come with it, on S3 too) plus one manifest read
per day with raw files; no raw data is read. The same function serves ``modelmeter transform``, the scheduled
Lambda (``transforms/lambda_handler.py``), the warnings of ``report``, ``chargeback`` and the dashboard, and any
other engine that picks days to transform.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow.fs as pafs

from common.constants import RAW_EVENTS, RUN_MANIFESTS
from common.lake import Lake
from sql.config import ReportingConfig

#: Why a day is stale (:attr:`StaleDay.reason`).
UNTRANSFORMED = "untransformed"
CHANGED = "changed"
_PARTITION = "dt="
#: Days checked at once on an S3 lake (each check is I/O-bound: listings and one small GET).
S3_WORKERS = 8


@dataclass(frozen=True)
class RawFile:
    """One raw file as a listing shows it: lake-relative path, bytes, modification time (ns; None if unknown)."""

    path: str
    size: int
    mtime_ns: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns}


@dataclass(frozen=True)
class StaleDay:
    """A UTC day whose raw files differ from what its last transform run read.

    Attributes:
        day: the UTC day (the ``dt=`` partition).
        reason: :data:`UNTRANSFORMED` (raw files, no manifest) or :data:`CHANGED`.
        new_files, changed_files, removed_files: lake-relative paths against the last manifest's listing.
        raw_files, raw_bytes: what the day's raw partition holds now.
        new_bytes: bytes of the new and changed files.
        last_run: the last manifest's run id (None when untransformed).
        price_version: the catalog version of the last run (None when untransformed): a late day is transformed
            again at it, so late data never re-prices the events the day already had.
    """

    day: date
    reason: str
    new_files: tuple[str, ...] = ()
    changed_files: tuple[str, ...] = ()
    removed_files: tuple[str, ...] = ()
    raw_files: int = 0
    raw_bytes: int = 0
    new_bytes: int = 0
    last_run: str | None = None
    price_version: str | None = None

    @property
    def drops_events(self) -> bool:
        """A re-run would drop the events of files the last run read and that are gone now."""
        return bool(self.removed_files)

    def describe(self) -> str:
        """One line for a person, e.g. ``2026-11-29: 1 new raw file (2,048 bytes) since run 2026…``."""
        if self.reason == UNTRANSFORMED:
            text = f"{self.day}: {_files(self.raw_files)} ({self.raw_bytes:,} bytes), never transformed"
        else:
            parts = [f"{_files(len(self.new_files), 'new')}" if self.new_files else "",
                     f"{_files(len(self.changed_files), 'changed')}" if self.changed_files else ""]
            text = (f"{self.day}: {' and '.join(p for p in parts if p)} ({self.new_bytes:,} bytes) since run "
                    f"{self.last_run}")
        if self.removed_files:
            text += (f"; {_files(len(self.removed_files))} that run read are gone (a re-run would drop their "
                     "events)")
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the Lambda's result, ``--format json``)."""
        return {"day": self.day.isoformat(), "reason": self.reason, "new_files": list(self.new_files),
                "changed_files": list(self.changed_files), "removed_files": list(self.removed_files),
                "raw_files": self.raw_files, "raw_bytes": self.raw_bytes, "new_bytes": self.new_bytes,
                "last_run": self.last_run, "price_version": self.price_version}


def _files(n: int, kind: str = "") -> str:
    return f"{n} {kind + ' ' if kind else ''}raw file{'s' if n != 1 else ''}"


def raw_listing(*, lake: Lake, day: date) -> list[RawFile]:
    """The day's raw files now (one listing; hidden temporary files are never listed), sorted by path."""
    cut = len(lake.base) + 1
    return [RawFile(info.path[cut:], int(info.size or 0), info.mtime_ns)
            for info in lake.list_file_infos(RAW_EVENTS, f"{_PARTITION}{day.isoformat()}")]


def raw_days(*, lake: Lake, date_from: date | None = None, date_to: date | None = None) -> list[date]:
    """The UTC days that have a raw partition (``dt=YYYY-MM-DD``), between the bounds (inclusive; None: open).

    One listing of the raw prefix's first level (on S3, one LIST of its common prefixes). A folder that is not a
    ``dt=`` date is ignored.
    """
    selector = pafs.FileSelector(lake.path(RAW_EVENTS), recursive=False, allow_not_found=True)
    days = []
    for info in lake.fs.get_file_info(selector):
        if info.type != pafs.FileType.Directory or not info.base_name.startswith(_PARTITION):
            continue
        try:
            day = date.fromisoformat(info.base_name[len(_PARTITION):])
        except ValueError:
            continue
        if (date_from is None or day >= date_from) and (date_to is None or day <= date_to):
            days.append(day)
    return sorted(days)


def last_manifest(*, lake: Lake, day: date) -> dict[str, Any] | None:
    """The day's last transform manifest (the one written last), or None when the day was never transformed.

    A manifest that cannot be parsed is skipped (a torn write of a killed run): the one before it counts.
    """
    infos = lake.list_file_infos(RUN_MANIFESTS, f"{_PARTITION}{day.isoformat()}", suffix=".json")
    # newest first; equal times (S3 keeps whole seconds) are settled by the manifests' own finish times below
    infos.sort(key=lambda i: (i.mtime_ns or 0, i.path), reverse=True)
    found: list[dict[str, Any]] = []
    for info in infos:
        if found and (info.mtime_ns or 0) != (infos[0].mtime_ns or 0):
            break
        try:
            with lake.fs.open_input_stream(info.path) as src:
                manifest = json.loads(src.read())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict):
            found.append(manifest)
    return max(found, key=lambda m: str(m.get("finished_at") or ""), default=None)


def _relative(url: str) -> str:
    """A manifest's file URL (absolute local path or s3:// URL) as a lake-relative path: the lake may have moved."""
    at = url.find(RAW_EVENTS + "/")
    return url[at:] if at >= 0 else url


#: The resolution of a listed modification time on S3 (a folder lake lists nanoseconds).
_LISTED_SECOND = 1_000_000_000


def _started_ns(manifest: dict[str, Any]) -> int | None:
    return _time_ns(manifest, "started_at")


def _time_ns(manifest: dict[str, Any], key: str) -> int | None:
    try:
        when = datetime.fromisoformat(str(manifest[key]))
    except (KeyError, ValueError):
        return None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1e9)


def _compare(manifest: dict[str, Any], now: list[RawFile]) -> tuple[list[str], list[str], list[str]]:
    """(new, changed, removed) paths of the listing ``now`` against the manifest's."""
    current = {f.path: f for f in now}
    listed = manifest.get("raw_listing")
    if isinstance(listed, list):
        before = {str(f["path"]): (f.get("size"), f.get("mtime_ns")) for f in listed}
        changed = [p for p, f in current.items() if p in before and before[p] != (f.size, f.mtime_ns)]
    else:  # a manifest of before raw_listing: its files by URL; a later modification means changed
        before = {_relative(str(f["path"])): (None, None)
                  for f in [*manifest.get("input_files", []), *manifest.get("unreadable_files", [])]}
        started = _started_ns(manifest)
        changed = [p for p, f in current.items() if p in before and started is not None
                   and f.mtime_ns is not None and f.mtime_ns > started]
    new = [p for p in current if p not in before]
    removed = sorted(p for p in before if p not in current)
    return new, changed, removed


def check_day(*, lake: Lake, day: date) -> StaleDay | None:
    """The day, if its raw files differ from what its last run read (see the module docstring); else None."""
    now = raw_listing(lake=lake, day=day)
    if not now:
        return None  # nothing to transform (a day whose raw files are all gone keeps its curated data)
    total = sum(f.size for f in now)
    manifest = last_manifest(lake=lake, day=day)
    if manifest is None:
        return StaleDay(day=day, reason=UNTRANSFORMED, new_files=tuple(f.path for f in now), raw_files=len(now),
                        raw_bytes=total, new_bytes=total)
    new, changed, removed = _compare(manifest, now)
    if not new and not changed:
        return None
    sizes = {f.path: f.size for f in now}
    return StaleDay(day=day, reason=CHANGED, new_files=tuple(new), changed_files=tuple(changed),
                    removed_files=tuple(removed), raw_files=len(now), raw_bytes=total,
                    new_bytes=sum(sizes[p] for p in (*new, *changed)), last_run=manifest.get("run_id"),
                    price_version=manifest.get("price_version"))


def stale_days(*, lake: Lake, date_from: date | None = None, date_to: date | None = None,
               days: Iterable[date] | None = None) -> list[StaleDay]:
    """Every UTC day whose raw files changed since its last transform run (or that has raw files and no run).

    Args:
        lake: a folder or ``s3://`` lake.
        date_from, date_to: bounds, inclusive (None: open), on the days that have a raw partition.
        days: check exactly these days instead (e.g. a report's range); the bounds still apply.

    Returns:
        The stale days, oldest first. Cost: per day checked, a listing of its raw files and of its manifests and
        one manifest read (no raw data is read); on S3, :data:`S3_WORKERS` days at a time.
    """
    if days is None:
        candidates = raw_days(lake=lake, date_from=date_from, date_to=date_to)
    else:
        candidates = sorted({d for d in days if (date_from is None or d >= date_from)
                             and (date_to is None or d <= date_to)})
    # on S3 each day costs two LISTs and a GET of ~30 ms each: a year's report checks 365 days, so overlap them
    workers = 1 if lake.is_local or len(candidates) < 2 else S3_WORKERS
    with ThreadPoolExecutor(max_workers=workers) as pool:
        checked = list(pool.map(lambda d: check_day(lake=lake, day=d), candidates))
    return [s for s in checked if s is not None]


def rerun_since(*, lake: Lake, date_from: date, date_to: date, since: datetime) -> list[date]:
    """The days between the bounds (inclusive) transformed again after ``since`` with other inputs or prices than
    the run in force at ``since``: their curated usage moved after that moment (e.g. a late file transformed after
    a chargeback version was computed from the curated tables).

    One listing of the manifests per day; only days with a manifest written after ``since`` are read.
    """
    cutoff = int(since.timestamp() * 1e9)
    moved = []
    for day in raw_days(lake=lake, date_from=date_from, date_to=date_to):
        infos = lake.list_file_infos(RUN_MANIFESTS, f"{_PARTITION}{day.isoformat()}", suffix=".json")
        # S3 lists whole seconds: a manifest of the same second as ``since`` is placed by its own finished_at
        before = [i for i in infos if (i.mtime_ns or 0) <= cutoff - _LISTED_SECOND]
        after: list[pafs.FileInfo] = []
        for info in (i for i in infos if (i.mtime_ns or 0) > cutoff - _LISTED_SECOND):
            manifest = _read(lake, info)
            finished = _time_ns(manifest, "finished_at") if manifest else None
            (after if (finished or info.mtime_ns or 0) > cutoff else before).append(info)
        if not after:
            continue
        then = _read(lake, max(before, key=lambda i: (i.mtime_ns or 0, i.path))) if before else None
        latest = last_manifest(lake=lake, day=day)
        if then is None or latest is None or _fingerprint(then) != _fingerprint(latest):
            moved.append(day)
    return moved


def _read(lake: Lake, info: pafs.FileInfo) -> dict[str, Any] | None:
    try:
        with lake.fs.open_input_stream(info.path) as src:
            manifest = json.loads(src.read())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _fingerprint(manifest: dict[str, Any]) -> tuple[str, frozenset[tuple[str, Any]]]:
    """What decides a day's curated rows: the catalog version and the files read (with their rows)."""
    files = frozenset((_relative(str(f["path"])), f.get("rows")) for f in manifest.get("input_files", []))
    return str(manifest.get("price_version")), files


@dataclass(frozen=True)
class LatePlan:
    """What an automatic run (``modelmeter transform`` without dates, the scheduled Lambda) does with stale days.

    Attributes:
        run: the days to transform now, oldest first (at most the cap).
        set_aside: stale days whose re-run would drop events (:attr:`StaleDay.drops_events`): left for a person,
            who transforms them explicitly (``--from D --to D``) once the missing raw files are understood.
        left: stale days beyond the cap, for the next run.
    """

    run: tuple[StaleDay, ...] = ()
    set_aside: tuple[StaleDay, ...] = ()
    left: tuple[StaleDay, ...] = ()


def plan(stale: Iterable[StaleDay], *, cap: int | None = None) -> LatePlan:
    """Split stale days into those to run now (oldest first: the nearest to a month-end close), those set aside,
    and those left beyond ``cap`` (None: no cap)."""
    ordered = sorted(stale, key=lambda s: s.day)
    aside = tuple(s for s in ordered if s.drops_events)
    runnable = [s for s in ordered if not s.drops_events]
    limit = len(runnable) if cap is None else max(cap, 0)
    return LatePlan(run=tuple(runnable[:limit]), set_aside=aside, left=tuple(runnable[limit:]))


def by_price_version(days: Iterable[StaleDay | date], *, default: str | None = None
                     ) -> list[tuple[str | None, list[date]]]:
    """Days grouped by the catalog version to transform them at: a stale day's last run's version (late data never
    re-prices what the day already held; re-pricing is explicit, ``--price-version``), else ``default`` (None: the
    latest). Groups in the order of their first day; days in order."""
    groups: dict[str | None, list[date]] = {}
    for d in days:
        day, version = (d.day, d.price_version or default) if isinstance(d, StaleDay) else (d, default)
        groups.setdefault(version, []).append(day)
    return [(v, sorted(set(ds))) for v, ds in sorted(groups.items(), key=lambda kv: min(kv[1]))]


def utc_span(config: ReportingConfig, first: date | None, last: date | None) -> tuple[date | None, date | None]:
    """The UTC days (the ``dt=`` partitions) that hold any instant of the reporting days ``first``…``last``
    (inclusive; None: open), e.g. to check a report's range for untransformed days."""
    start, end = config.utc_window(first, last)
    return (None if start is None else start.astimezone(UTC).date(),
            None if end is None else (end.astimezone(UTC) - timedelta(microseconds=1)).date())
