"""The gateway's seams: tenant registry, long-poll result store and usage-event emitter.

Each has a local implementation (files, memory, the local Parquet sink) and an AWS one (DynamoDB, Firehose). The ASGI
app (:mod:`ingest.app`) depends only on these protocols, so the same code runs under uvicorn and in Lambda.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from common.contracts import Team


@dataclass(frozen=True)
class KeyRecord:
    """A stored API key: only its id (non-secret, goes into usage events) and the SHA-256 of the secret."""

    api_key_id: str
    key_hash: str
    team_id: str
    created_at: str
    revoked: bool = False


def hash_key(secret: str) -> str:
    """The stored form of an API key (hex SHA-256). Keys are 256-bit random, so a plain hash is enough."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class TenantRegistry(Protocol):
    """Teams and their keys (local file in local mode, DynamoDB in AWS)."""

    def lookup_key(self, secret: str) -> tuple[KeyRecord, Team] | None:
        """The key record and its team for a presented secret, or ``None`` if unknown or revoked."""
        ...

    def get_team(self, team_id: str) -> Team | None: ...

    def put_team(self, team: Team) -> None: ...

    def list_teams(self) -> list[Team]: ...

    def create_key(self, team_id: str) -> tuple[KeyRecord, str]:
        """Create a key for an existing team; returns the record and the secret (shown once, never stored)."""
        ...


class LongPollStore(Protocol):
    """Results of the seed's async ("streaming: true") flow, keyed by request id, with a TTL.

    ``claim`` must be atomic (DynamoDB: conditional delete): of concurrent polls, exactly one gets the result.
    """

    def start(self, request_id: str, *, team_id: str, ttl_seconds: int) -> None: ...

    def complete(self, request_id: str, *, result: dict[str, Any]) -> None: ...

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
