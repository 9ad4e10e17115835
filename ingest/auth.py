"""Who is calling and what they may do: key → team, the spoofed-``team_id`` check, the model allowlist.

A revoked or expired key is refused exactly like an unknown one (the registries' ``lookup_key`` returns ``None`` for
all three), so a caller cannot tell them apart. Each accepted key's use is noted in memory (``record_use``) and
written in batches by the registry's ``flush``: :func:`flushing_key_uses` around a served gateway's life, the
Lambda handler after each invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
from collections.abc import AsyncIterator

from common.contracts import Team
from common.errors import BadRequest, Forbidden, Unauthorized
from ingest.ports import KeyRecord, TenantRegistry
from ingest.tenants import LAST_USED_FLUSH_SECONDS

log = logging.getLogger(__name__)


def authenticate(registry: TenantRegistry, secret: str | None) -> tuple[KeyRecord, Team]:
    """The key record and team of a presented secret. Raises :class:`Unauthorized` (no usage event follows)."""
    if not secret:
        raise Unauthorized("missing API key")
    found = registry.lookup_key(secret)
    if found is None:
        raise Unauthorized("invalid API key")
    registry.record_use(found[0])
    return found


@contextlib.asynccontextmanager
async def flushing_key_uses(registry: TenantRegistry, *,
                            every: float = LAST_USED_FLUSH_SECONDS) -> AsyncIterator[None]:
    """While inside: write the registry's noted key uses every ``every`` seconds, off the event loop; on the way
    out (the gateway's shutdown), once more. A failing write is logged and retried; it never stops the gateway."""
    task = asyncio.get_running_loop().create_task(_flush_every(registry, every))
    try:
        yield
    finally:
        task.cancel()
        await _flush(registry)


async def _flush_every(registry: TenantRegistry, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await _flush(registry)


async def _flush(registry: TenantRegistry) -> None:
    try:
        await asyncio.to_thread(registry.flush, force=True)
    except Exception:  # noqa: BLE001 - "last used" is advisory: log it, keep serving
        log.exception("could not write the keys' last use; the next flush retries")


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
