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
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from common.constants import ENV_TENANTS
from ingest.ports import KeyRecord, Limits, Team, hash_key

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
    return out


def _team_from_json(obj: dict[str, Any]) -> Team:
    budget = obj.get("monthly_budget_usd")
    return Team(team_id=obj["team_id"], cost_center=obj.get("cost_center"),
                monthly_budget_usd=None if budget is None else Decimal(budget),
                allowed_models=tuple(obj.get("allowed_models") or ("*",)),
                limits=Limits(**(obj.get("limits") or {})), business_unit=obj.get("business_unit"))


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
    """``--tenants``, else ``$MODELMETER_TENANTS``, else ``tenants.json`` beside a local lake's folder."""
    from common.constants import DEFAULT_LAKE, ENV_LAKE
    from common.errors import UserError

    explicit = tenants or os.environ.get(ENV_TENANTS)
    if explicit:
        if explicit.startswith("s3://"):
            raise UserError(f"tenant registry {explicit!r}: the local registry is a file; in AWS it is DynamoDB")
        return Path(explicit).expanduser()
    lake_uri = str(lake or os.environ.get(ENV_LAKE) or DEFAULT_LAKE)
    if lake_uri.startswith("s3://"):
        raise UserError(f"the lake {lake_uri} is on S3: give the tenant registry file with --tenants "
                        f"(or ${ENV_TENANTS})")
    return Path(lake_uri).expanduser().resolve().parent / "tenants.json"


def open_registry(args: Any) -> LocalTenantRegistry:
    return LocalTenantRegistry(registry_path(tenants=getattr(args, "tenants", None), lake=getattr(args, "lake", None)))


def _budget(value: str | None) -> Decimal | None:
    from common.errors import UserError

    if value is None:
        return None
    try:
        budget = Decimal(value)
    except InvalidOperation:
        raise UserError(f"--monthly-budget {value!r} is not a number of USD (write e.g. 2500 or 2500.50)") from None
    if not budget.is_finite() or budget < 0:
        raise UserError(f"--monthly-budget {value!r} must be a non-negative amount of USD")
    return budget


def run_add_cli(args: Any) -> int:
    """``modelmeter tenants add TEAM``: registers (or updates) a team; the budgets then reach the views."""
    from common.errors import UserError

    team_id = (args.team or "").strip()
    if not team_id:
        raise UserError("the team name is empty")
    if getattr(args, "rps", None) is not None and args.rps <= 0:
        raise UserError("--rps must be positive")
    if getattr(args, "daily_tokens", None) is not None and args.daily_tokens <= 0:
        raise UserError("--daily-tokens must be positive")
    registry = open_registry(args)
    existing = registry.get_team(team_id)
    team = _merged(existing or Team(team_id=team_id), args)
    registry.put_team(team)
    _publish_teams(args, registry)
    print(f"team {team_id} {'updated' if existing else 'registered'} in {registry.path}: cost centre "
          f"{team.cost_center or '-'}, budget {team.monthly_budget_usd if team.monthly_budget_usd is not None else '-'}"
          f" USD/month, models {','.join(team.allowed_models)}, rps {team.limits.requests_per_second or '-'}, "
          f"daily tokens {team.limits.daily_tokens or '-'}", file=sys.stderr)
    return 0


def _merged(team: Team, args: Any) -> Team:
    """The team with the options given on the command line; an option left out keeps the team's current value."""
    given = {name: getattr(args, name, None) for name in ("cost_center", "monthly_budget", "allow", "rps",
                                                          "daily_tokens")}
    limits = replace(team.limits, **{k: v for k, v in (("requests_per_second", given["rps"]),
                                                       ("daily_tokens", given["daily_tokens"])) if v is not None})
    changes: dict[str, Any] = {"limits": limits}
    if given["cost_center"] is not None:
        changes["cost_center"] = given["cost_center"]
    if given["monthly_budget"] is not None:
        changes["monthly_budget_usd"] = _budget(given["monthly_budget"])
    if given["allow"]:
        changes["allowed_models"] = tuple(given["allow"])
    return replace(team, **changes)


def _publish_teams(args: Any, registry: LocalTenantRegistry) -> None:
    """Copy teams (cost centres, budgets) into the lake for the views, when the analytics module is there."""
    try:
        from sql.reference import write_teams
    except ImportError:
        return
    from common.lake import Lake

    write_teams(lake=Lake.open(getattr(args, "lake", None)), teams=registry.list_teams())


def run_list_cli(args: Any) -> int:
    """``modelmeter tenants list``: one line per team (no secrets: there are none to show)."""
    registry = open_registry(args)
    teams = registry.list_teams()
    if not teams:
        print(f"no teams in {registry.path}", file=sys.stderr)
        return 0
    print("team_id\tcost_center\tmonthly_budget_usd\tallowed_models\trps\tdaily_tokens\tkeys")
    for t in teams:
        keys = [k.api_key_id for k in registry.list_keys(t.team_id) if not k.revoked]
        print("\t".join(str(v) if v is not None else "-" for v in (
            t.team_id, t.cost_center, t.monthly_budget_usd, ",".join(t.allowed_models),
            t.limits.requests_per_second, t.limits.daily_tokens, ",".join(keys) or None)))
    return 0


def run_keys_create_cli(args: Any) -> int:
    """``modelmeter keys create TEAM``: prints the secret once, alone on stdout; only its hash is stored."""
    from common.errors import UserError

    registry = open_registry(args)
    try:
        record, secret = registry.create_key(args.team)
    except KeyError:
        raise UserError(f"no team {args.team!r} in {registry.path}; add it first with "
                        f"`modelmeter tenants add {args.team}`") from None
    print(secret)
    print(f"created key {record.api_key_id} for team {record.team_id}; the secret above is shown only once",
          file=sys.stderr)
    return 0
