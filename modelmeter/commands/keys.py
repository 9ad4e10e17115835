"""``modelmeter keys create|list|revoke|rotate``: a team's API keys, in the local file or the DynamoDB tenant table.

A secret is printed once, alone on stdout (``create``, ``rotate``); only its SHA-256 is stored, so no command can
show it again. Messages go to stderr. How soon a change reaches a running gateway (docs/gateway.md, "Key
lifecycle"): a new key, a revocation or a rotation within ``recheck_seconds`` (1 s) for the local file and within
the key cache (30 s) for Lambda containers reading the DynamoDB table; an expiry at its instant everywhere.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from typing import Any

from common.errors import UserError
from ingest.ports import KeyRecord, utc_now
from ingest.registry import AdminRegistry, is_dynamodb, open_registry

#: What each registry's longest revocation delay is, for the messages (the registries' defaults).
_REACHES = {False: "a running gateway refuses it within 1 s (it re-reads the file)",
            True: "gateway containers refuse it within 30 s (they cache a key that long)"}


def run_create(args: Any) -> int:
    """``modelmeter keys create TEAM [--expires-in D]``: prints the secret once; only its hash is stored."""
    registry = _open(args)
    expires_at = _expiry(args.expires_in)
    try:
        record, secret = registry.create_key(args.team, expires_at=expires_at)
    except KeyError:
        raise UserError(f"no team {args.team!r} in {registry.location}; add it first with "
                        f"`modelmeter tenants add {args.team}`") from None
    print(secret)
    print(f"created key {record.api_key_id} for team {record.team_id} in {registry.location}"
          f"{_expiry_note(record)}; the secret above is shown only once", file=sys.stderr)
    _twin_note(registry, record)
    return 0


def run_list(args: Any) -> int:
    """``modelmeter keys list [TEAM]``: one line per key, oldest first; never a secret (none is stored)."""
    registry = _open(args)
    if args.team is not None and registry.get_team(args.team) is None:
        raise UserError(f"no team {args.team!r} in {registry.location}")
    keys = registry.list_keys(args.team)
    if not keys:
        print(f"no keys{f' of team {args.team}' if args.team else ''} in {registry.location}", file=sys.stderr)
        return 0
    now = utc_now()
    print("api_key_id\tteam_id\tcreated_at\tlast_used_at\texpires_at\tstatus")
    for k in keys:
        status = k.state(now) + (f" (by {k.replaced_by})" if k.replaced_by and k.state(now) != "revoked" else "")
        print("\t".join(v or "-" for v in (k.api_key_id, k.team_id, k.created_at, k.last_used_at, k.expires_at,
                                           status)))
    return 0


def run_revoke(args: Any) -> int:
    """``modelmeter keys revoke KEY_ID``: refused from then on (its API Gateway key, if any, disabled)."""
    registry = _open(args)
    record = _find(registry, args.key_id)
    if not registry.revoke_key(record.api_key_id):  # removed between the listing and now
        raise UserError(f"no key {args.key_id!r} in {registry.location} (see `modelmeter keys list`)")
    again = " (it was already revoked)" if record.revoked else ""
    print(f"revoked key {record.api_key_id} of team {record.team_id} in {registry.location}{again}: "
          f"{_REACHES[is_dynamodb(registry)]}", file=sys.stderr)
    if record.api_gateway_key_id:
        print(f"its API Gateway key {record.api_gateway_key_id} is disabled", file=sys.stderr)
    return 0


def run_rotate(args: Any) -> int:
    """``modelmeter keys rotate KEY_ID [--grace 24h] [--expires-in D]``: a new key for the same team, its secret
    printed once; the old key keeps working for the grace, then is refused as an expired key."""
    registry = _open(args)
    old = _find(registry, args.key_id)
    expires_at = _expiry(args.expires_in)
    if expires_at is None and old.expires_at is not None:
        # The new key lives as long as the old one was meant to: a team on 90-day keys stays on 90-day keys.
        expires_at = utc_now() + (datetime.fromisoformat(old.expires_at) - datetime.fromisoformat(old.created_at))
    grace: timedelta = args.grace
    try:
        record, secret, old = registry.rotate_key(old.api_key_id, grace=grace, expires_at=expires_at)
    except KeyError:
        raise UserError(f"no key {args.key_id!r} in {registry.location} (see `modelmeter keys list`)") from None
    print(secret)
    print(f"created key {record.api_key_id} for team {record.team_id} in {registry.location}{_expiry_note(record)}; "
          f"the secret above is shown only once", file=sys.stderr)
    until = str(old.expires_at)
    shortened = datetime.fromisoformat(until) < datetime.fromisoformat(record.created_at) + grace - timedelta(seconds=1)
    print(f"the old key {old.api_key_id} keeps working until {until} "
          f"({'its own expiry, sooner than the grace' if shortened else f'grace {_human(grace)}'}), then is refused",
          file=sys.stderr)
    _twin_note(registry, record)
    return 0


def _open(args: Any) -> AdminRegistry:
    return open_registry(tenants=getattr(args, "tenants", None), lake=getattr(args, "lake", None),
                         api_gateway_unit=getattr(args, "api_gateway_unit", None))


def _find(registry: AdminRegistry, key_id: str) -> KeyRecord:
    """The key of that id, or the one-line failure (exit 1)."""
    found = next((k for k in registry.list_keys() if k.api_key_id == key_id), None)
    if found is None:
        raise UserError(f"no key {key_id!r} in {registry.location} (see `modelmeter keys list`)")
    return found


def _expiry(given: timedelta | datetime | None) -> datetime | None:
    """``--expires-in`` (parsed by the command line) as an instant."""
    if isinstance(given, timedelta):
        return utc_now() + given
    return given


def _expiry_note(record: KeyRecord) -> str:
    return f", expiring at {record.expires_at}" if record.expires_at else ""


def _human(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes and minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def _twin_note(registry: AdminRegistry, record: KeyRecord) -> None:
    """Behind API Gateway: which header carries what."""
    if record.api_gateway_key_id:
        print(f"API Gateway key {record.api_gateway_key_id} (same secret) is in team {record.team_id}'s usage plan: "
              f"send the secret as x-api-key (and on /v1 also as Authorization: Bearer)", file=sys.stderr)
    elif is_dynamodb(registry):
        print("behind API Gateway a request also carries one of the team's API Gateway keys as x-api-key: send "
              "this secret as `Authorization: Bearer` on /v1, or make it an API Gateway key too with "
              "--api-gateway-unit UNIT (docs/deploy.md)", file=sys.stderr)
