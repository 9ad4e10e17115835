"""The gateway's seams: tenant registry, long-poll result store and usage-event emitter.

Each has a local implementation (files, memory, the local Parquet sink) and an AWS one (DynamoDB, Firehose). The ASGI
app (:mod:`ingest.app`) depends only on these protocols, so the same code runs under uvicorn and in Lambda.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from common.contracts import Team


@dataclass(frozen=True)
class KeyRecord:
    """A stored API key: only its id (non-secret, goes into usage events) and the SHA-256 of the secret.

    Times are ISO 8601 in UTC (:func:`utc_iso`). A key is usable while it is not revoked and, if it has an
    ``expires_at``, until that instant (checked against the clock at every lookup, so expiry needs no write).
    """

    api_key_id: str
    key_hash: str
    team_id: str
    created_at: str
    revoked: bool = False
    #: When the key stops working (``keys create --expires-in``, or the end of a rotation's grace); None: never.
    expires_at: str | None = None
    #: The last use flushed to the registry (batched: see the registries' ``record_use``); None: never used.
    last_used_at: str | None = None
    #: The id of the key ``keys rotate`` made to replace this one (which then expires after the grace).
    replaced_by: str | None = None
    #: Its twin in API Gateway (same secret, in the team's usage plan), when the DynamoDB registry made one.
    api_gateway_key_id: str | None = None

    def expired(self, now: datetime) -> bool:
        """The key has an expiry and ``now`` (aware, any zone) is at or past it."""
        return self.expires_at is not None and now >= datetime.fromisoformat(self.expires_at)

    def usable(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now``: what a lookup requires."""
        return not self.revoked and not self.expired(now)

    def state(self, now: datetime) -> str:
        """``revoked``, ``expired``, ``rotated`` (replaced, still in its grace) or ``active``, for listings."""
        if self.revoked:
            return "revoked"
        if self.expired(now):
            return "expired"
        return "rotated" if self.replaced_by else "active"


def hash_key(secret: str) -> str:
    """The stored form of an API key (hex SHA-256). Keys are 256-bit random, so a plain hash is enough."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def utc_now() -> datetime:
    """The registries' wall clock (expiry, last use); injectable in both registries."""
    return datetime.now(UTC)


def utc_iso(moment: datetime) -> str:
    """The one text form of a key's times: UTC, milliseconds (``2026-11-25T10:00:00.000+00:00``). Every such
    string has the same length and offset, so they order as text as they do in time (DynamoDB compares them so)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


class TenantRegistry(Protocol):
    """Teams and their keys (local file in local mode, DynamoDB in AWS)."""

    def lookup_key(self, secret: str) -> tuple[KeyRecord, Team] | None:
        """The key record and its team for a presented secret, or ``None`` if unknown, revoked or expired."""
        ...

    def record_use(self, record: KeyRecord) -> None:
        """Note that a key was used now, in memory only (no I/O: it is on every request's path)."""
        ...

    def flush(self, *, force: bool = False) -> int:
        """Write the uses noted since the last flush, at most once per flush interval unless ``force``;
        returns how many keys' ``last_used_at`` were written (never one older than the stored one)."""
        ...

    def get_team(self, team_id: str) -> Team | None: ...

    def put_team(self, team: Team) -> None: ...

    def list_teams(self) -> list[Team]: ...

    def create_key(self, team_id: str, *, expires_at: datetime | None = None) -> tuple[KeyRecord, str]:
        """Create a key for an existing team; returns the record and the secret (shown once, never stored)."""
        ...


class LongPollStore(Protocol):
    """Results of the seed's async ("streaming: true") flow, keyed by request id, with a TTL.

    ``claim`` must be atomic (DynamoDB: conditional delete): of concurrent polls, exactly one gets the result.
    """

    def start(self, request_id: str, *, team_id: str, ttl_seconds: int) -> None: ...

    def complete(self, request_id: str, *, result: dict[str, Any]) -> None: ...

    def complete_pending(self, request_id: str, *, result: dict[str, Any], owner: str | None = None) -> bool:
        """Complete an item only while it is still pending, atomically: ``True`` if ``result`` was written (no
        worker can claim the item any more: :meth:`claim_run` then loses); ``False`` when a worker already claimed
        it (running or done), or it is gone. The start of a call whose worker invocation may or may not have been
        queued fails the call only on ``True``, so the call never has both the start's error and the worker's run.
        ``owner`` (a fresh token when omitted) is stored with the write: a retry of a write whose answer was lost
        finds its own token and answers ``True``, so the winner is never told it lost."""
        ...

    def claim_run(self, request_id: str, *, team_id: str, owner: str | None = None) -> bool:
        """Move a pending item to running, atomically: ``True`` for exactly one caller, ``False`` when the item is
        not pending (another delivery of the same job runs or ran it), expired, unknown or another team's. A worker
        that may be invoked more than once for one call (Lambda's async delivery) calls the model only on ``True``.
        ``owner`` as in :meth:`complete_pending`: asked again with the same token, a claim it won stays ``True``."""
        ...

    def claim(self, request_id: str, *, team_id: str) -> dict[str, Any] | None:
        """The finished result, removed atomically; ``None`` while pending or if someone else claimed it.

        Raises:
            common.errors.NotFound: unknown or expired request id, or one that belongs to another team.
        """
        ...


class EventEmitter(Protocol):
    """Takes usage events (dicts in schema v1) off the request path and delivers each exactly once."""

    def admit(self) -> None:
        """Raise :class:`common.errors.ServiceUnavailable` when a new call's usage could not be recorded."""
        ...

    def open_call(self, placeholder: dict[str, Any]) -> None:
        """Record a call before it is sent to a provider; the event with the same ``event_id`` closes it. If the
        process dies first, the placeholder (``status`` ``unknown``, estimated counts) becomes the call's event."""
        ...

    def emit(self, event: dict[str, Any]) -> None:
        """Enqueue one event; must not block on I/O to the sink (durably spooled before returning)."""
        ...

    def status(self) -> dict[str, Any]:
        """``{"spool": "ok" | "failing", …}``: what the health check reports."""
        ...

    def flush(self, *, timeout: float = 30.0) -> object:
        """Deliver everything enqueued so far (blocking); implementations may return whether all was delivered."""
        ...

    def close(self, *, timeout: float = 30.0) -> object:
        """Flush and stop background work (called on SIGTERM / shutdown)."""
        ...
