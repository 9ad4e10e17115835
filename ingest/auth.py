"""Who is calling and what they may do: key → team, the spoofed-``team_id`` check, the model allowlist."""

from __future__ import annotations

import fnmatch

from common.contracts import Team
from common.errors import BadRequest, Forbidden, Unauthorized
from ingest.ports import KeyRecord, TenantRegistry


def authenticate(registry: TenantRegistry, secret: str | None) -> tuple[KeyRecord, Team]:
    """The key record and team of a presented secret. Raises :class:`Unauthorized` (no usage event follows)."""
    if not secret:
        raise Unauthorized("missing API key")
    found = registry.lookup_key(secret)
    if found is None:
        raise Unauthorized("invalid API key")
    return found


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an ``Authorization: Bearer <key>`` header."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def check_team_header(team: Team, claimed: str | None, *, required: bool) -> None:
    """The team always comes from the key; a ``team_id`` header naming another team is refused (403)."""
    if claimed is None or claimed == "":
        if required:
            raise BadRequest("missing team_id header")
        return
    if claimed != team.team_id:
        raise Forbidden("team_id does not match the API key's team", refusal_reason="team_mismatch")


def check_model_allowed(team: Team, *model_ids: str | None) -> None:
    """Every named model (id and ARN) must match one of the team's allowed patterns (403 otherwise)."""
    patterns = team.allowed_models
    if "*" in patterns:
        return
    for model_id in model_ids:
        if model_id and not any(fnmatch.fnmatchcase(model_id, p) for p in patterns):
            raise Forbidden(f"model {model_id!r} is not allowed for team {team.team_id!r}", refusal_reason="allowlist")
