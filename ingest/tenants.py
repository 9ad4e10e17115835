"""The local tenant registry (a JSON file) and the ``modelmeter tenants`` / ``modelmeter keys`` commands.

Keys are stored only as their SHA-256 (:func:`ingest.ports.hash_key`); the secret is printed once by
``keys create`` and never written anywhere. Writes are atomic (temporary file + rename) under an exclusive lock,
so concurrent CLI calls cannot lose each other's changes; a running gateway re-reads the file when it changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from common.constants import DEFAULT_LAKE, ENV_LAKE, ENV_TENANTS
from common.contracts import DEFAULT_ALERT_AT, Limits, Team, history_from_json
from common.errors import UserError
from ingest.ports import KeyRecord, hash_key

KEY_PREFIX = "mk_live_"
REGISTRY_VERSION = 1


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


class LocalTenantRegistry:
    """Teams and hashed keys in one JSON file (implements :class:`ingest.ports.TenantRegistry`)."""

    def __init__(self, path: str | os.PathLike[str], *, recheck_seconds: float = 1.0):
        self.path = Path(path)
        self.recheck_seconds = recheck_seconds
        self._next_check = 0.0
        self._mutex = threading.Lock()
        self._mtime: int | None = None
        self._teams: dict[str, Team] = {}
        self._keys: dict[str, KeyRecord] = {}   # key hash → record

    @property
    def location(self) -> str:
        """Where the registry is, for messages: the file's path."""
        return str(self.path)

    # --- reading ------------------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        # One stat a second at most: a key created by the CLI works within a second, and the request path stays lean.
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.recheck_seconds
        try:
            mtime = self.path.stat().st_mtime_ns
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
            keys = {k["key_hash"]: KeyRecord(**k) for k in data.get("keys", [])}
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"tenant registry {self.path} is damaged ({exc}); restore it from a backup") from None
        return teams, keys

    def lookup_key(self, secret: str) -> tuple[KeyRecord, Team] | None:
        self._refresh()
        record = self._keys.get(hash_key(secret))
        if record is None or record.revoked:
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
        self._refresh()
        return sorted((k for k in self._keys.values() if team_id in (None, k.team_id)), key=lambda k: k.created_at)

    # --- writing ------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[tuple[dict[str, Team], dict[str, KeyRecord]]]:
        """Read-modify-write under an exclusive lock; the file is replaced atomically on exit."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            teams, keys = self._read()
            yield teams, keys
            payload = {"version": REGISTRY_VERSION,
                       "teams": [_team_to_json(t) for t in sorted(teams.values(), key=lambda t: t.team_id)],
                       "keys": [asdict(k) for k in sorted(keys.values(), key=lambda k: k.created_at)]}
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(payload, out, indent=2)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)  # key hashes only, but no reason to share them
            os.replace(tmp, self.path)
        self._mtime, self._next_check = None, 0.0  # this process re-reads on next use

    def put_team(self, team: Team) -> None:
        with self._locked() as (teams, _keys):
            teams[team.team_id] = team

    def create_key(self, team_id: str) -> tuple[KeyRecord, str]:
        with self._locked() as (teams, keys):
            if team_id not in teams:
                raise KeyError(team_id)
            key_id, secret = new_secret()
            record = KeyRecord(api_key_id=key_id, key_hash=hash_key(secret), team_id=team_id,
                               created_at=datetime.now(UTC).isoformat(timespec="milliseconds"))
            keys[record.key_hash] = record
        return record, secret

    def revoke_key(self, api_key_id: str) -> bool:
        with self._locked() as (_teams, keys):
            for key_hash, record in keys.items():
                if record.api_key_id == api_key_id:
                    keys[key_hash] = replace(record, revoked=True)
                    return True
        return False


# --- command line ----------------------------------------------------------------------------------------------

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


