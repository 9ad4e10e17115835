"""The local tenant registry (a JSON file) and the ``modelmeter tenants`` / ``modelmeter keys`` commands.

Keys are stored only as their SHA-256 (:func:`ingest.ports.hash_key`); the secret is printed once by
``keys create`` and never written anywhere. Writes are atomic (temporary file + rename) under an exclusive lock,
so concurrent CLI calls cannot lose each other's changes; a running gateway re-reads the file when it changes
(checked at most once per ``recheck_seconds``, 1 s: the longest a revocation takes to reach a running gateway).

A key's last use is not written into the registry file: each gateway process notes uses in memory
(``record_use``) and ``flush`` merges them, at most once per ``flush_seconds`` (60 s) and on shutdown, into a
sidecar file beside it (``tenants.last_used.json``: key id → time, the later time kept). So the registry file,
which every gateway re-reads when it changes, is rewritten only by the commands, and a flush can never race a
command's change to a team or key.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, fields, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from common.constants import DEFAULT_LAKE, ENV_LAKE, ENV_TENANTS
from common.contracts import DEFAULT_ALERT_AT, Limits, Team, history_from_json
from common.errors import UserError
from ingest.ports import KeyRecord, hash_key, utc_iso, utc_now

log = logging.getLogger(__name__)
KEY_PREFIX = "mk_live_"
REGISTRY_VERSION = 1
#: How often a process writes the key uses it noted (both registries), and so how stale "last used" may be.
LAST_USED_FLUSH_SECONDS = 60.0
_KEY_FIELDS = frozenset(f.name for f in fields(KeyRecord))


def new_secret() -> tuple[str, str]:
    """``(api_key_id, secret)``: the id is short and non-secret; the secret carries 256 random bits."""
    key_id = KEY_PREFIX + secrets.token_hex(6)
    return key_id, f"{key_id}.{secrets.token_urlsafe(32)}"


def _team_to_json(team: Team) -> dict[str, Any]:
    out = asdict(team)
    out["monthly_budget_usd"] = None if team.monthly_budget_usd is None else str(team.monthly_budget_usd)
    out["allowed_models"] = list(team.allowed_models)
    out["cost_center_history"] = team.history_json()
    return out


def _team_from_json(obj: dict[str, Any]) -> Team:
    budget = obj.get("monthly_budget_usd")
    return Team(team_id=obj["team_id"], cost_center=obj.get("cost_center"),
                monthly_budget_usd=None if budget is None else Decimal(budget),
                allowed_models=tuple(obj.get("allowed_models") or ("*",)),
                limits=Limits(**(obj.get("limits") or {})), business_unit=obj.get("business_unit"),
                cost_center_history=history_from_json(obj.get("cost_center_history")),
                budget_mode=obj.get("budget_mode") or "alert",
                alert_at=tuple(obj["alert_at"]) if obj.get("alert_at") is not None else DEFAULT_ALERT_AT)


def rotation_problem(record: KeyRecord, now: datetime) -> str | None:
    """Why a key cannot be rotated (revoked, expired, already replaced), or None."""
    if not record.usable(now):
        return f"key {record.api_key_id} is {record.state(now)}: create a new key with `modelmeter keys create`"
    if record.replaced_by:
        return (f"key {record.api_key_id} was already rotated: its replacement is {record.replaced_by} (it stops "
                f"working at {record.expires_at})")
    return None


def rotated(record: KeyRecord, *, new_key_id: str, now: datetime, grace: timedelta) -> KeyRecord:
    """The old key of a rotation: replaced by ``new_key_id``, expiring after the grace (or sooner, if it already
    expired sooner)."""
    ends = utc_iso(now + grace)
    expires = ends if record.expires_at is None else min(record.expires_at, ends,
                                                         key=datetime.fromisoformat)
    return replace(record, replaced_by=new_key_id, expires_at=expires)


def _key_from_json(obj: dict[str, Any]) -> KeyRecord:
    # Unknown fields are a newer modelmeter's: keep reading what this one knows.
    return KeyRecord(**{k: v for k, v in obj.items() if k in _KEY_FIELDS})


def _key_to_json(record: KeyRecord) -> dict[str, Any]:
    # Unset optional fields are left out: a registry without expiring keys keeps its old shape.
    return {k: v for k, v in asdict(record).items() if v is not None and k != "last_used_at"}


class LocalTenantRegistry:
    """Teams and hashed keys in one JSON file (implements :class:`ingest.ports.TenantRegistry`).

    Args:
        path: the registry file.
        recheck_seconds: how often a lookup checks whether the file changed (the longest a key created, revoked
            or rotated by a command takes to reach this process).
        flush_seconds: the least time between two writes of this process's key uses (``flush``).
        clock: the wall clock (expiry, last use); monotonic: the interval clock (tests move both).
    """

    def __init__(self, path: str | os.PathLike[str], *, recheck_seconds: float = 1.0,
                 flush_seconds: float = LAST_USED_FLUSH_SECONDS, clock: Callable[[], datetime] = utc_now,
                 monotonic: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.recheck_seconds = recheck_seconds
        self.flush_seconds = flush_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._next_check = 0.0
        self._next_flush = 0.0
        self._mutex = threading.Lock()
        self._mtime: tuple[int, ...] | None = None
        self._teams: dict[str, Team] = {}
        self._keys: dict[str, KeyRecord] = {}   # key hash → record
        self._used: dict[str, datetime] = {}    # key id → latest use not yet flushed

    @property
    def last_used_path(self) -> Path:
        """The sidecar file of flushed key uses (``tenants.last_used.json`` beside ``tenants.json``)."""
        return self.path.with_name(f"{self.path.stem}.last_used.json")

    @property
    def location(self) -> str:
        """Where the registry is, for messages: the file's path."""
        return str(self.path)

    # --- reading ------------------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        # One stat a second at most: a key created by the CLI works within a second, and the request path stays lean.
        now = self._monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.recheck_seconds
        try:
            st = self.path.stat()
            # Not the mtime alone: file times tick in jiffies, so two writes a few ms apart (a key created, then
            # revoked) can share one. Every write is a new file (rename), so its inode and ctime tell them apart.
            mtime: tuple[int, ...] | None = (st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return
        teams, keys = self._read()
        with self._mutex:
            self._teams, self._keys, self._mtime = teams, keys, mtime

    def _read(self) -> tuple[dict[str, Team], dict[str, KeyRecord]]:
        if not self.path.exists():
            return {}, {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            teams = {t["team_id"]: _team_from_json(t) for t in data.get("teams", [])}
            keys = {k["key_hash"]: _key_from_json(k) for k in data.get("keys", [])}
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"tenant registry {self.path} is damaged ({exc}); restore it from a backup") from None
        return teams, keys

    def lookup_key(self, secret: str) -> tuple[KeyRecord, Team] | None:
        self._refresh()
        record = self._keys.get(hash_key(secret))
        if record is None or not record.usable(self._clock()):
            return None
        team = self._teams.get(record.team_id)
        return None if team is None else (record, team)

    def get_team(self, team_id: str) -> Team | None:
        self._refresh()
        return self._teams.get(team_id)

    def list_teams(self) -> list[Team]:
        self._refresh()
        return sorted(self._teams.values(), key=lambda t: t.team_id)

    def list_keys(self, team_id: str | None = None) -> list[KeyRecord]:
        """Key records (never secrets), optionally of one team, with their flushed ``last_used_at``."""
        self._refresh()
        used = self._read_last_used()
        return sorted((replace(k, last_used_at=used.get(k.api_key_id)) for k in self._keys.values()
                       if team_id in (None, k.team_id)), key=lambda k: k.created_at)

    # --- last use -----------------------------------------------------------------------------------------------

    def record_use(self, record: KeyRecord) -> None:
        now = self._clock()
        with self._mutex:
            self._used[record.api_key_id] = now

    def flush(self, *, force: bool = False) -> int:
        """Merge this process's key uses into the sidecar file (the later time wins), at most once per
        ``flush_seconds`` unless ``force`` (shutdown); returns how many keys were written. Never raises for an
        unwritable file: the uses are kept for the next flush and a warning logged."""
        now = self._monotonic()
        with self._mutex:
            if not self._used or (not force and now < self._next_flush):
                return 0
            pending, self._used = self._used, {}
            self._next_flush = now + self.flush_seconds
        try:
            with self._lock_file():
                merged = self._read_last_used()
                for key_id, moment in pending.items():
                    merged[key_id] = max(merged.get(key_id, ""), utc_iso(moment))
                _write_json(self.last_used_path, {"version": REGISTRY_VERSION, "last_used": merged})
        except OSError as exc:
            log.warning("could not write key uses to %s (%s); kept for the next flush", self.last_used_path, exc)
            with self._mutex:
                for key_id, moment in pending.items():
                    self._used[key_id] = max(moment, self._used.get(key_id, moment))
            return 0
        return len(pending)

    def _read_last_used(self) -> dict[str, str]:
        try:
            data = json.loads(self.last_used_path.read_text(encoding="utf-8"))
            return {str(k): utc_iso(datetime.fromisoformat(v)) for k, v in dict(data["last_used"]).items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Only "last used" is lost (it is advisory); the next flush writes a good file again.
            log.warning("ignoring the damaged key-use file %s (%s)", self.last_used_path, exc)
            return {}

    # --- writing ------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[tuple[dict[str, Team], dict[str, KeyRecord]]]:
        """Read-modify-write under an exclusive lock; the file is replaced atomically on exit."""
        with self._lock_file():
            teams, keys = self._read()
            yield teams, keys
            payload = {"version": REGISTRY_VERSION,
                       "teams": [_team_to_json(t) for t in sorted(teams.values(), key=lambda t: t.team_id)],
                       "keys": [_key_to_json(k) for k in sorted(keys.values(), key=lambda k: k.created_at)]}
            _write_json(self.path, payload)
        self._mtime, self._next_check = None, 0.0  # this process re-reads on next use

    @contextlib.contextmanager
    def _lock_file(self) -> Iterator[None]:
        """The registry's exclusive lock (the registry file and the key-use sidecar are written under it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def put_team(self, team: Team) -> None:
        with self._locked() as (teams, _keys):
            teams[team.team_id] = team

    def create_key(self, team_id: str, *, expires_at: datetime | None = None) -> tuple[KeyRecord, str]:
        """A new key of a team (``KeyError`` for an unknown team), optionally expiring at ``expires_at``."""
        with self._locked() as (teams, keys):
            if team_id not in teams:
                raise KeyError(team_id)
            record, secret = self._new_key(team_id, expires_at)
            keys[record.key_hash] = record
        return record, secret

    def _new_key(self, team_id: str, expires_at: datetime | None) -> tuple[KeyRecord, str]:
        key_id, secret = new_secret()
        return KeyRecord(api_key_id=key_id, key_hash=hash_key(secret), team_id=team_id,
                         created_at=utc_iso(self._clock()),
                         expires_at=None if expires_at is None else utc_iso(expires_at)), secret

    def rotate_key(self, api_key_id: str, *, grace: timedelta,
                   expires_at: datetime | None = None) -> tuple[KeyRecord, str, KeyRecord]:
        """A new key for the same team, and the old one set to expire after ``grace``, in one write.

        Returns:
            The new record, its secret (shown once) and the old key's record as it now is.

        Raises:
            KeyError: no key with that id. UserError: the key is revoked, expired or already rotated.
        """
        with self._locked() as (_teams, keys):
            old = next((k for k in keys.values() if k.api_key_id == api_key_id), None)
            if old is None:
                raise KeyError(api_key_id)
            now = self._clock()
            problem = rotation_problem(old, now)
            if problem:
                raise UserError(problem)
            record, secret = self._new_key(old.team_id, expires_at)
            keys[record.key_hash] = record
            keys[old.key_hash] = old = rotated(old, new_key_id=record.api_key_id, now=now, grace=grace)
        return record, secret, old

    def revoke_key(self, api_key_id: str) -> bool:
        with self._locked() as (_teams, keys):
            for key_hash, record in keys.items():
                if record.api_key_id == api_key_id:
                    keys[key_hash] = replace(record, revoked=True)
                    return True
        return False


# --- command line ----------------------------------------------------------------------------------------------

def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Replace ``path`` atomically (temporary file, fsync, rename), readable by its owner only."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(payload, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)  # key hashes only, but no reason to share them
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def registry_path(*, tenants: str | None, lake: str | None) -> Path:
    """``--tenants``, else ``$MODELMETER_TENANTS``, else ``tenants.json`` beside a local lake's folder.

    The path of the local file only: ``ingest.registry.open_registry`` also opens a ``dynamodb://TABLE`` registry.
    """

    explicit = tenants or os.environ.get(ENV_TENANTS)
    if explicit:
        if explicit.startswith("s3://"):
            raise UserError(f"tenant registry {explicit!r}: the local registry is a file; in AWS it is DynamoDB "
                            f"(dynamodb://TABLE)")
        if explicit.lower().startswith("dynamodb:"):
            raise UserError(f"tenant registry {explicit!r}: this command reads the local registry file only")
        return Path(explicit).expanduser()
    lake_uri = str(lake or os.environ.get(ENV_LAKE) or DEFAULT_LAKE)
    if lake_uri.startswith("s3://"):
        raise UserError(f"the lake {lake_uri} is on S3: name the tenant registry with --tenants (or "
                        f"${ENV_TENANTS}): the deployed unit's tenant table as dynamodb://TABLE, or a file")
    return Path(lake_uri).expanduser().resolve().parent / "tenants.json"


