"""DynamoDB implementations of the gateway's tenant registry and long-poll store (:mod:`ingest.ports`).

Both tables have one string partition key, ``pk`` (``common.constants.DYNAMO_PARTITION_KEY``).

* Tenant table (single-table): ``team#<team_id>`` items hold a team; ``key#<sha256 of the secret>`` items hold a
  key's id, team and state. The secret itself is never stored, so a leaked table grants nothing. A team item holds
  its dated organisation in ``cost_center_history`` (a list of maps ``{effective_from: "YYYY-MM-DD",
  cost_center}``, oldest first; ``effective_from`` absent: since always; the attribute absent: ``cost_center`` since
  always, the shape the deploy seeds) and a ``revision`` token that a read-modify-write checks, so two commands
  changing one team at the same time cannot lose each other's change.
* Long-poll table: one item per request id, ``status`` ``pending`` → ``done`` (with the JSON ``result``), and a TTL
  attribute ``expires_at`` (epoch seconds; DynamoDB deletes expired items lazily, so reads check it too). Claiming a
  finished result is a conditional delete: of concurrent claims exactly one gets the item back.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from common.constants import DYNAMO_PARTITION_KEY as PK
from common.constants import DYNAMO_TTL_ATTRIBUTE as TTL
from common.contracts import CostCenterSpan, Limits, Team, history_from_json
from common.errors import NotFound, UserError
from ingest.ports import KeyRecord, hash_key
from ingest.tenants import new_secret

log = logging.getLogger(__name__)
MAX_CACHED_KEYS = 10_000
#: A team item's revision: a new random token on every write, which the next read-modify-write checks (items
#: seeded by a deploy have none yet).
REVISION = "revision"
_ABSENT = object()  # get_team found no item: a later put must not overwrite one created meanwhile
_UNREAD = object()  # put_team of a team this registry never read: unconditional
_ser = TypeSerializer()
_de = TypeDeserializer()


def _to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _span_values(span: CostCenterSpan) -> dict[str, Any]:
    # A map without NULLs: an absent effective_from means since always, an absent cost_center none.
    return {k: v for k, v in (("effective_from", span.effective_from.isoformat() if span.effective_from else None),
                              ("cost_center", span.cost_center)) if v is not None}


def _team_values(team: Team) -> dict[str, Any]:
    return {
        PK: f"team#{team.team_id}", "kind": "team", "team_id": team.team_id, "cost_center": team.cost_center,
        "monthly_budget_usd": team.monthly_budget_usd, "allowed_models": list(team.allowed_models),
        "business_unit": team.business_unit,
        # Numbers go to DynamoDB as Decimal (it refuses float); str() keeps e.g. 0.5 exact.
        "requests_per_second": (Decimal(str(team.limits.requests_per_second))
                                if team.limits.requests_per_second is not None else None),
        "daily_tokens": team.limits.daily_tokens,
        "cost_center_history": [_span_values(s) for s in team.cost_center_history] or None,
    }


def _team_from(values: dict[str, Any]) -> Team:
    rps = values.get("requests_per_second")
    daily = values.get("daily_tokens")
    budget = values.get("monthly_budget_usd")
    return Team(
        team_id=values["team_id"], cost_center=values.get("cost_center"),
        monthly_budget_usd=Decimal(budget) if budget is not None else None,
        allowed_models=tuple(values.get("allowed_models") or ("*",)),
        limits=Limits(requests_per_second=float(rps) if rps is not None else None,
                      daily_tokens=int(daily) if daily is not None else None),
        business_unit=values.get("business_unit"),
        cost_center_history=history_from_json(values.get("cost_center_history")),
    )


class DynamoTenantRegistry:
    """Teams and API keys in one DynamoDB table (implements :class:`ingest.ports.TenantRegistry`).

    Args:
        table_name: the tenant table.
        client: a ``dynamodb`` client (default: a new one from the environment).
        cache_seconds: how long a looked-up key stays cached in this process (a revoked key keeps working at most
            this long; 0 disables the cache). Two reads per request otherwise.

    ``put_team`` of a team this registry has read (``get_team``, ``list_teams``) is conditional on the item being
    as it was read (its ``revision``, or its absence); a blind ``put_team`` writes unconditionally.
    """

    def __init__(self, *, table_name: str, client: Any = None, cache_seconds: float = 30.0):
        self.table_name = table_name
        self._db = client or boto3.client("dynamodb")
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, tuple[KeyRecord, Team]]] = {}
        self._lock = threading.Lock()
        self._revisions: dict[str, Any] = {}  # team id → revision read (None: none yet; _ABSENT: no item)

    @property
    def location(self) -> str:
        """Where the registry is, for messages: ``dynamodb://<table>`` and the client's region."""
        region = getattr(getattr(self._db, "meta", None), "region_name", None)
        return f"dynamodb://{self.table_name}" + (f" ({region})" if region else "")

    def lookup_key(self, secret: str) -> tuple[KeyRecord, Team] | None:
        digest = hash_key(secret)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self._cache_seconds:
            return hit[1]
        found = self._lookup_hash(digest)
        if found is not None and self._cache_seconds > 0:
            # Only hits are cached: random keys from a scanner must not grow the cache (or hide a key created
            # a moment later in another container). The size bound keeps a container's memory flat regardless.
            with self._lock:
                if len(self._cache) >= MAX_CACHED_KEYS:
                    self._cache.clear()
                self._cache[digest] = (now, found)
        return found

    def _lookup_hash(self, digest: str) -> tuple[KeyRecord, Team] | None:
        item = self._get(f"key#{digest}")
        if item is None or item.get("revoked"):
            return None
        team = self.get_team(item["team_id"])
        if team is None:
            return None
        record = KeyRecord(api_key_id=item["api_key_id"], key_hash=digest, team_id=item["team_id"],
                           created_at=item["created_at"], revoked=bool(item.get("revoked", False)))
        return record, team

    def get_team(self, team_id: str) -> Team | None:
        item = self._get(f"team#{team_id}")
        with self._lock:
            self._revisions[team_id] = _revision(item) if item else _ABSENT
        return _team_from(item) if item else None

    def put_team(self, team: Team) -> None:
        """Write the team's item whole (its history included).

        Raises:
            UserError: the team was read by this registry and has changed (or appeared) in the table since.
        """
        with self._lock:
            seen = self._revisions.get(team.team_id, _UNREAD)
        values = {**_team_values(team), REVISION: uuid.uuid4().hex}
        condition: dict[str, Any] = {}
        if seen is _ABSENT:
            condition = {"ConditionExpression": "attribute_not_exists(#pk)", "ExpressionAttributeNames": {"#pk": PK}}
        elif seen is None:
            condition = {"ConditionExpression": "attribute_exists(#pk) AND attribute_not_exists(#rev)",
                         "ExpressionAttributeNames": {"#pk": PK, "#rev": REVISION}}
        elif seen is not _UNREAD:
            condition = {"ConditionExpression": "#rev = :rev", "ExpressionAttributeNames": {"#rev": REVISION},
                         "ExpressionAttributeValues": {":rev": {"S": str(seen)}}}
        try:
            self._db.put_item(TableName=self.table_name, Item=_to_item(values), **condition)
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            with self._lock:
                self._revisions.pop(team.team_id, None)
            raise UserError(f"team {team.team_id} changed in {self.location} after it was read (another command "
                            f"at the same time?); nothing was written: run the command again") from None
        with self._lock:
            self._revisions[team.team_id] = values[REVISION]
            self._cache.clear()  # a changed allowlist or limit applies at once in this process

    def list_teams(self) -> list[Team]:
        items = self._scan_kind("team")
        with self._lock:
            self._revisions.update({values["team_id"]: _revision(values) for values in items})
        return sorted((_team_from(values) for values in items), key=lambda t: t.team_id)

    def create_key(self, team_id: str) -> tuple[KeyRecord, str]:
        """Create a key (same id/secret format as the local registry); ``KeyError`` for an unknown team."""
        if self.get_team(team_id) is None:
            raise KeyError(team_id)
        key_id, secret = new_secret()
        record = KeyRecord(api_key_id=key_id, key_hash=hash_key(secret), team_id=team_id,
                           created_at=datetime.now(UTC).isoformat(timespec="milliseconds"))
        self._db.put_item(
            TableName=self.table_name,
            Item=_to_item({PK: f"key#{record.key_hash}", "kind": "key", "api_key_id": record.api_key_id,
                           "team_id": team_id, "created_at": record.created_at, "revoked": False}),
            ConditionExpression="attribute_not_exists(#pk)", ExpressionAttributeNames={"#pk": PK})
        return record, secret

    def list_keys(self, team_id: str | None = None) -> list[KeyRecord]:
        """Key records (never secrets), optionally of one team."""
        records = []
        for values in self._scan_kind("key"):
            if team_id is None or values["team_id"] == team_id:
                records.append(KeyRecord(api_key_id=values["api_key_id"], key_hash=values[PK].split("#", 1)[1],
                                         team_id=values["team_id"], created_at=values["created_at"],
                                         revoked=bool(values.get("revoked", False))))
        return sorted(records, key=lambda r: r.created_at)

    def revoke_key(self, api_key_id: str) -> bool:
        """Revoke a key by its id; ``False`` if there is no such key."""
        for record in self.list_keys():
            if record.api_key_id == api_key_id:
                self._db.update_item(TableName=self.table_name, Key={PK: {"S": f"key#{record.key_hash}"}},
                                     UpdateExpression="SET revoked = :t",
                                     ExpressionAttributeValues={":t": {"BOOL": True}})
                with self._lock:
                    self._cache.pop(record.key_hash, None)
                return True
        return False

    def _scan_kind(self, kind: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name, "FilterExpression": "#k = :kind",
            "ExpressionAttributeNames": {"#k": "kind"}, "ExpressionAttributeValues": {":kind": {"S": kind}},
        }
        while True:
            page = self._db.scan(**kwargs)
            found.extend(_from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _get(self, pk: str) -> dict[str, Any] | None:
        item = self._db.get_item(TableName=self.table_name, Key={PK: {"S": pk}}).get("Item")
        return _from_item(item) if item else None


class DynamoLongPollStore:
    """Results of the seed's async flow in DynamoDB (implements :class:`ingest.ports.LongPollStore`).

    Args:
        table_name: the long-poll table (TTL enabled on ``expires_at``).
        client: a ``dynamodb`` client.
        clock: seconds since the epoch (tests move time).
    """

    def __init__(self, *, table_name: str, client: Any = None, clock: Any = time.time):
        self.table_name = table_name
        self._db = client or boto3.client("dynamodb")
        self._clock = clock

    def start(self, request_id: str, *, team_id: str, ttl_seconds: int) -> None:
        expires = int(self._clock()) + int(ttl_seconds)
        self._db.put_item(TableName=self.table_name,
                          Item=_to_item({PK: request_id, "team_id": team_id, "status": "pending", TTL: expires}))

    def complete(self, request_id: str, *, result: dict[str, Any]) -> None:
        # JSON text, not a DynamoDB map: results hold floats (which DynamoDB refuses) and the item stays one string.
        try:
            self._db.update_item(
                TableName=self.table_name, Key={PK: {"S": request_id}},
                UpdateExpression="SET #s = :done, #r = :result",
                ConditionExpression="attribute_exists(#pk)",
                ExpressionAttributeNames={"#s": "status", "#r": "result", "#pk": PK},
                ExpressionAttributeValues={":done": {"S": "done"}, ":result": {"S": json.dumps(result)}})
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            # Expired or never started: nobody can poll it any more. Its usage was billed when it finished.
            log.warning("long-poll request %s finished after its record expired; result dropped", request_id)

    def claim(self, request_id: str, *, team_id: str) -> dict[str, Any] | None:
        now = int(self._clock())
        try:
            response = self._db.delete_item(
                TableName=self.table_name, Key={PK: {"S": request_id}},
                ConditionExpression="#s = :done AND team_id = :team AND #ttl > :now",
                ExpressionAttributeNames={"#s": "status", "#ttl": TTL},
                ExpressionAttributeValues={":done": {"S": "done"}, ":team": {"S": team_id},
                                           ":now": {"N": str(now)}},
                ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            return self._not_claimed(request_id, team_id=team_id, item=exc.response.get("Item"), now=now)
        old = _from_item(response["Attributes"]) if response.get("Attributes") else None
        if old is None:
            return None  # deleted between the condition and the delete by a concurrent claim: it won, not us
        self._leave_tombstone(request_id, team_id=team_id, expires=int(old[TTL]))
        if old.get("status") != "done" or "result" not in old:
            # What we deleted was the winner's tombstone, not a result: DynamoDB evaluates a condition and its
            # delete atomically, so this cannot happen there, but a store that does not serialise concurrent
            # writes to one item (moto's in-process backend) can interleave them. We did not win; the tombstone
            # is back, and the result was returned exactly once, by the winner.
            return None
        return json.loads(old["result"])

    def _not_claimed(self, request_id: str, *, team_id: str, item: dict[str, Any] | None,
                     now: int) -> dict[str, Any] | None:
        """Why the conditional delete failed: pending or already claimed → ``None``; anything else → NotFound."""
        values = _from_item(item) if item else None
        if values is None or values.get("team_id") != team_id or int(values.get(TTL, 0)) <= now:
            # Unknown, expired, or another team's: the same answer for all three, so ids cannot be probed.
            raise NotFound(f"unknown or expired request id {request_id!r}")
        return None

    def _leave_tombstone(self, request_id: str, *, team_id: str, expires: int) -> None:
        # Later (or slower concurrent) polls of a claimed id then see "no result" rather than "unknown id".
        try:
            self._db.put_item(TableName=self.table_name,
                              Item=_to_item({PK: request_id, "team_id": team_id, "status": "claimed", TTL: expires}),
                              ConditionExpression="attribute_not_exists(#pk)", ExpressionAttributeNames={"#pk": PK})
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                log.warning("could not mark long-poll request %s as claimed (%s)", request_id, _code(exc))


def _revision(values: dict[str, Any]) -> str | None:
    revision = values.get(REVISION)
    return None if revision is None else str(revision)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
